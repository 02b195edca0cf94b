"""Structured pruning on any graph: attention heads, feed-forward hidden units and conv
channels physically removed (smaller matmuls, a smaller artifact), by magnitude or by a
Taylor score computed on real inputs.

Two configs:
- `StructuredPruneConfig(ratio, importance, target)`: torch-pruning's DependencyGraph
  traces the model on its example inputs and, for each Linear ("ffn") or Conv ("conv")
  layer, finds every layer coupled to its output channels. Only *hidden* widths are cut:
  groups whose channels pass through unary element-wise ops (activations, BatchNorm,
  reshapes) into the next layers' inputs. A group that meets an add, a product, a
  concatenation, a LayerNorm or a bare nn.Parameter is a residual stream, a FiLM
  modulation or a model input/output width; cutting it would change the model's
  interface (the extractor's conv_state input is d_model wide) or need a custom rule, so
  it is left alone. quantize/prune.py's PruneChannelsConfig (fc1/fc2 and nn.Sequential
  pairs only; used by the extractor's NPU trainer) stays as the simple data-free path.
- `PruneHeadsConfig(ratio, importance)`: removes whole heads of each attention. torch-
  pruning's nn.MultiheadAttention rule shrinks embed_dim (the residual width, every head
  kept), not the head count, and MHA cannot hold fewer heads than embed_dim / head_dim;
  so each MHA becomes the equivalent SplitAttention (quantize/attention.py) and a head is
  removed as head_dim rows of q/k/v and head_dim columns of out_proj, with torch-pruning's
  Linear pruning functions; `num_heads` is lowered to match.

Importance: "magnitude" is the L2 norm of every weight a channel (or head) owns across
the group (torch-pruning's GroupMagnitudeImportance). "taylor" is the Taylor expansion of
the output-reconstruction loss L(w) = sum over outputs of |f(x; w) - f(x; w0)|^2 / power
around the original weights w0 on calibration inputs: its first-order term is zero (w0 is
the minimum), so the score is the second-order one, sum w^2 * diag(H) (Optimal Brain
Damage; torch-pruning's GroupHessianImportance), with H the Gauss-Newton Hessian J^T J
estimated from gradients of random projections v . f(x) (E[(v . J)^2] = diag(J^T J)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from avedge.quantize.api import recipe_context, register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError

IMPORTANCE = ("magnitude", "taylor")
TARGETS = ("ffn", "conv", "all")
# grad_fn names (without "Backward<n>") a hidden-width group may pass through: the
# layers' own arithmetic, unary activations and reshapes. Anything else (add, mul, cat,
# split, layer_norm, matmul) couples the width to another tensor.
_UNARY = re.compile(
    r"(Gelu|Relu|Silu|Tanh|Sigmoid|LeakyRelu|Elu|Hardswish|Hardtanh|Hardsigmoid|Mish|"
    r"Softplus|Clamp|Threshold|View|UnsafeView|Reshape|Alias|Transpose|Permute|T|Addmm|Mm|"
    r"Squeeze|Unsqueeze|Clone|Convolution|NativeBatchNorm|CudnnBatchNorm|Prelu|"
    r"ToCopy)(Backward\d*)?")


def _check_common(ratio, importance, batches):
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"ratio (the fraction removed) must be in (0, 1), got {ratio!r}")
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"calibration_batches must be an int >= 1, got {batches!r}")


@register_config
@dataclass(frozen=True)
class StructuredPruneConfig:
    """Remove `ratio` of the hidden channels of every feed-forward ("ffn": Linear ->
    activation -> Linear), conv ("conv": Conv -> BatchNorm/activation -> Conv) or both
    ("all") group torch-pruning finds, ranked by "magnitude" or "taylor" (on
    `calibration_batches` calibration inputs)."""

    ratio: float
    importance: str = "magnitude"
    target: str = "all"
    calibration_batches: int = 8

    def __post_init__(self):
        _check_common(self.ratio, self.importance, self.calibration_batches)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


@register_config
@dataclass(frozen=True)
class PruneHeadsConfig:
    """Remove `ratio` of the heads of every attention (nn.MultiheadAttention, or a module
    with q_proj/k_proj/v_proj/out_proj Linears and num_heads/head_dim that its forward
    reads), ranked by "magnitude" or "taylor"; at least one head stays."""

    ratio: float
    importance: str = "magnitude"
    calibration_batches: int = 8

    def __post_init__(self):
        _check_common(self.ratio, self.importance, self.calibration_batches)


# -- inputs and Taylor scores ------------------------------------------------------------

def _batches(model, n: int, what: str) -> list[tuple]:
    from avedge.quantize.distill import calibration_batches

    return calibration_batches(model, n, what)


def _output_list(out) -> list:
    import torch

    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]


def gauss_newton_grads(model, batches, probes: int = 4) -> None:
    """Set each parameter's .grad to the mean of (d(v . f(x)) / dw)^2 over random v and
    the batches: the diagonal of the reconstruction loss's Gauss-Newton Hessian (each
    output scaled by its size and power, as quantize/distill.output_mse weighs it)."""
    import torch

    params = [p for p in model.parameters() if p.is_floating_point()]
    acc = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(0)
    count = 0
    was = [p.requires_grad for p in params]
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        for b in batches:
            outs = _output_list(model(*b))
            for k in range(probes):
                s = sum((torch.randn(o.shape, generator=gen) * o).sum()
                        / (o.numel() * o.detach().pow(2).mean().clamp_min(1e-12)).sqrt()
                        for o in outs)
                grads = torch.autograd.grad(s, params, retain_graph=k < probes - 1,
                                            allow_unused=True)
                for a, g in zip(acc, grads):
                    if g is not None:
                        a += g.detach().pow(2)
                count += 1
    for p, a, r in zip(params, acc, was):
        p.requires_grad_(r)
        p.grad = a / max(count, 1)


def _clear_grads(model) -> None:
    for p in model.parameters():
        p.grad = None


# -- channel groups ----------------------------------------------------------------------

def _root_kind(layer) -> str | None:
    from torch import nn

    if type(layer) is nn.Linear:
        return "ffn"
    if type(layer) in (nn.Conv1d, nn.Conv2d) and layer.groups == 1:
        return "conv"
    return None


def _hidden_group(group, root) -> bool:
    """True when the group's channels are a hidden width: only `root`'s outputs, unary
    ops and the next layers' inputs (see the module docstring)."""
    import torch_pruning as tp
    from torch_pruning import ops

    outs = ins = 0
    for dep, _ in group:
        node, fn = dep.target, dep.handler
        if node.type in (ops.OPTYPE.LINEAR, ops.OPTYPE.CONV, ops.OPTYPE.DEPTHWISE_CONV):
            if fn in (tp.prune_linear_out_channels, tp.prune_conv_out_channels):
                if node.module is not root and node.type != ops.OPTYPE.DEPTHWISE_CONV:
                    return False  # another layer writes these channels: a residual stream
                outs += 1
            else:
                ins += 1
        elif node.type == ops.OPTYPE.BN or node.type == ops.OPTYPE.PRELU:
            continue
        elif node.type in (ops.OPTYPE.ELEMENTWISE, ops.OPTYPE.RESHAPE):
            name = type(node.grad_fn).__name__ if node.grad_fn is not None else ""
            if not _UNARY.fullmatch(name):
                return False
        else:  # LayerNorm, GroupNorm, nn.Parameter, MHA, embedding, concat, split, ...
            return False
    return outs >= 1 and ins >= 1


def _out_fn(layer):
    import torch_pruning as tp
    from torch import nn

    return tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else (
        tp.prune_conv_out_channels)


def _dependency_graph(model, example):
    import warnings

    import torch_pruning as tp

    with warnings.catch_warnings():  # it warns about bare nn.Parameters: never pruned here
        warnings.simplefilter("ignore")
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def _output_shapes(model, example) -> list:
    import torch

    with torch.no_grad():
        return [tuple(o.shape) for o in _output_list(model(*example))]


@register_handler(StructuredPruneConfig)
def structured_prune(model, config: StructuredPruneConfig):
    import torch
    import torch_pruning as tp

    what = f"StructuredPruneConfig(target={config.target!r})"
    batches = _batches(model, config.calibration_batches, what)
    example = batches[0]
    shapes = _output_shapes(model, example)
    model.eval()
    dg = _dependency_graph(model, example)
    groups = []
    for layer in list(model.modules()):
        kind = _root_kind(layer)
        if kind is None or config.target not in (kind, "all"):
            continue
        if layer not in dg.module2node:  # not on the traced path: the model never calls it
            continue  # here (the lip reader's heads of the other token rates)
        n = layer.weight.shape[0]
        group = dg.get_pruning_group(layer, _out_fn(layer), idxs=list(range(n)))
        if _hidden_group(group, layer):
            groups.append((layer, group))
    if not groups:
        kinds = {"ffn": "Linear -> activation -> Linear", "conv": "Conv -> activation -> Conv",
                 "all": "Linear -> activation -> Linear or Conv -> activation -> Conv"}
        raise AvedgeError(f"{what} found no hidden width to prune in {type(model).__name__}: "
                          f"it prunes {kinds[config.target]} channels that feed nothing else "
                          f"(not a residual stream or an input/output width)")
    if config.importance == "taylor":
        gauss_newton_grads(model, batches)
        scorer = tp.importance.GroupHessianImportance()
    else:
        scorer = tp.importance.GroupMagnitudeImportance(p=2)
    plan = []
    for layer, group in groups:  # all scored on the unpruned model, then pruned
        n = layer.weight.shape[0]
        drop = min(n - 1, round(n * config.ratio))
        if drop:
            with torch.no_grad():
                scores = scorer(group)
            plan.append((layer, torch.argsort(scores)[:drop].tolist()))
    for layer, drop in plan:
        dg.get_pruning_group(layer, _out_fn(layer), idxs=drop).prune()
    _clear_grads(model)
    if _output_shapes(model, example) != shapes:  # a coupling the rules above missed
        raise AvedgeError(f"{what} changed the output shapes of {type(model).__name__} "
                          f"({shapes} -> {_output_shapes(model, example)}); use "
                          f"PruneChannelsConfig (prune-0.25) for this model")
    return model


# -- heads -------------------------------------------------------------------------------

def _head_scores(attn, taylor: bool):
    """Importance of each head of `attn`: over the weights the head owns (its head_dim
    rows of q/k/v, its columns of out_proj), sum w^2 (magnitude) or sum w^2 * diag(H)."""
    import torch

    h, d = attn.num_heads, attn.head_dim
    total = torch.zeros(h)
    for proj, dim in ((attn.q_proj, 0), (attn.k_proj, 0), (attn.v_proj, 0),
                      (attn.out_proj, 1)):
        w = proj.weight.detach()
        s = w.pow(2) * (proj.weight.grad if taylor else 1)
        s = s if dim == 0 else s.T
        total += s.reshape(h, d, -1).sum((1, 2))
        if dim == 0 and proj.bias is not None:
            b = proj.bias.detach().pow(2) * (proj.bias.grad if taylor else 1)
            total += b.reshape(h, d).sum(1)
    return total


@register_handler(PruneHeadsConfig)
def prune_heads(model, config: PruneHeadsConfig):
    import torch
    import torch_pruning as tp
    from avedge.quantize.attention import SplitAttention, attention_modules, split_attention
    from torch import nn

    if isinstance(model, nn.MultiheadAttention):  # the model is one attention
        model = SplitAttention.from_mha(model)
    split_attention(model)
    found = attention_modules(model)
    if not found:
        raise AvedgeError(f"PruneHeadsConfig found no attention in {type(model).__name__}: it "
                          f"prunes nn.MultiheadAttention and modules with q_proj/k_proj/v_proj/"
                          f"out_proj Linears and num_heads/head_dim; use prune-0.25 (MLP units)")
    if all(round(m.num_heads * config.ratio) == 0 or m.num_heads == 1 for _, m in found):
        heads = ", ".join(f"{name or 'model'}: {m.num_heads}" for name, m in found)
        raise AvedgeError(f"PruneHeadsConfig(ratio={config.ratio}) removes no head (heads: "
                          f"{heads}); raise the ratio")
    taylor = config.importance == "taylor"
    # Magnitude needs no data; inputs, where there are some, check the result.
    has_inputs = hasattr(model, "calibration_inputs") or recipe_context().example_inputs
    batches = (_batches(model, config.calibration_batches, "PruneHeadsConfig(taylor)")
               if taylor or has_inputs else [])
    shapes = _output_shapes(model, batches[0]) if batches else None
    if taylor:
        gauss_newton_grads(model, batches)
    for _, attn in found:
        h, d = attn.num_heads, attn.head_dim
        drop = min(h - 1, round(h * config.ratio))
        drop_heads = torch.argsort(_head_scores(attn, taylor))[:drop]
        idxs = sorted(int(k) * d + j for k in drop_heads for j in range(d))
        if not idxs:
            continue
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            tp.prune_linear_out_channels(proj, idxs)
        tp.prune_linear_in_channels(attn.out_proj, idxs)
        attn.num_heads = h - len(drop_heads)
    _clear_grads(model)
    if batches and _output_shapes(model, batches[0]) != shapes:
        raise AvedgeError(f"PruneHeadsConfig changed the output shapes of "
                          f"{type(model).__name__}: an attention's forward does not follow "
                          f"its num_heads/head_dim attributes")
    return model
