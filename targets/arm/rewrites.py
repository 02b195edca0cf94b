"""Equivalent, NPU-friendly forms of layers the Arm backends reject or run slowly.

Applied at export (targets/arm/lower.py) to a deep copy of the model; the user's
model and its file are untouched. Every rewrite computes the same function as the
layer it replaces (tests/targets/test_arm.py checks each one in fp32),
and the manifest lists which ones were applied, so a reader of the artifact knows
the graph on the NPU is not literally the model's module tree.

Rewrites are matched on standard torch layers and on traced graph patterns, never
on model classes: `targets` does not import `models` (see DESIGN.md, layering).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MeanPool1d(nn.Module):
    """AdaptiveAvgPool1d(1) as a mean over time: the Ethos-U partitioner rejects the
    adaptive pool (and large-kernel AvgPool1d) but delegates `mean(-1, keepdim=True)`."""

    def forward(self, x):  # (B, C, T) -> (B, C, 1)
        return x.mean(-1, keepdim=True)


class Conv1dAs2d(nn.Module):
    """Conv1d run as Conv2d on a (B, C, 1, T) layout: CMSIS-NN (cortex-m) has no
    1-D convolution, so a Conv1d would stay fp32 on the portable kernels."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                              stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                              dilation=(1, conv.dilation[0]), groups=conv.groups,
                              bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight[:, :, None, :])
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
        self.conv.to(memory_format=torch.channels_last)

    def forward(self, x):  # (B, C, T) -> (B, C', T')
        x4 = x[:, :, None, :].contiguous(memory_format=torch.channels_last)
        return self.conv(x4)[:, :, 0, :]


class ExplicitGroupNorm(nn.Module):
    """GroupNorm as mean / mean-of-squares / rsqrt: the Arm backend's own GroupNorm
    decomposition fails (DecomposeVarPass, executorch 1.5.1: "a.node.constant should
    not be None"); these ops all lower to the NPU."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = gn.num_groups, gn.eps
        self.weight = nn.Parameter(gn.weight.detach().clone()) if gn.affine else None
        self.bias = nn.Parameter(gn.bias.detach().clone()) if gn.affine else None

    def forward(self, x):  # (B, C, *)
        shape = x.shape
        g = x.reshape(shape[0], self.groups, -1)
        mu = g.mean(-1, keepdim=True)
        c = g - mu
        y = (c * torch.rsqrt((c * c).mean(-1, keepdim=True) + self.eps)).reshape(shape)
        if self.weight is not None:
            view = (1, -1) + (1,) * (len(shape) - 2)
            y = y * self.weight.reshape(view) + self.bias.reshape(view)
        return y


def _replace(module: nn.Module, match, make) -> list[str]:
    """Swap every submodule for which `match(m)` holds with `make(m)`; -> their paths."""
    done = []
    for name, child in list(module.named_modules()):
        if not name or not match(child):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, make(child))
        done.append(name)
    return done


def _adaptive_avg_to_mean(module: nn.Module) -> list[str]:
    def match(m):
        size = getattr(m, "output_size", None)
        return isinstance(m, nn.AdaptiveAvgPool1d) and size in (1, (1,))

    return _replace(module, match, lambda m: MeanPool1d())


# ------------------------------------------------------------------ traced-graph rewrites

def _single_frame_convs_to_linear(gm: torch.fx.GraphModule, example: tuple) -> list[str]:
    """A strided conv1d / conv_transpose1d that sees exactly one frame is a matrix product.

    A streaming front-end (conv-STFT: kernel 192, stride 128) on one chunk makes one
    frame; Ethos-U convolutions take strides <= 3 and transposed convolutions stride 2
    only, so the conv is rejected. As `linear` on the flattened frame it runs on the
    NPU with the same weights. Only single-frame cases are rewritten (exactly equal).
    """
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(*example)
    done = []
    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.conv1d.default,
                                                              aten.conv_transpose1d.default):
            continue
        x, w = node.args[0], node.args[1]
        bias = node.args[2] if len(node.args) > 2 else None
        xs = x.meta.get("tensor_meta")
        if xs is None or w.op != "get_attr" or len(xs.shape) != 3 or xs.shape[0] != 1:
            continue
        weight = _fetch(gm, w.target)
        kernel = weight.shape[-1]
        rest = list(node.args[3:]) + [None] * 5
        groups = rest[3] if node.target == aten.conv1d.default else rest[4]
        if groups not in (None, 1):
            continue
        dilation = rest[2] if node.target == aten.conv1d.default else rest[3]
        padding = rest[1]
        if tuple(dilation or (1,)) != (1,) or tuple(padding or (0,)) != (0,):
            continue
        transposed = node.target == aten.conv_transpose1d.default
        if transposed:
            if xs.shape[2] != 1 or tuple(rest[2] or (0,)) != (0,):
                continue  # several frames overlap-add: not a single product
            # (1, Cin, 1) @ (Cin, Cout*K) -> (1, Cout, K)
            mat = weight.reshape(weight.shape[0], -1).t().contiguous()  # (Cout*K, Cin)
            out_shape = (1, weight.shape[1], kernel)
        else:
            if xs.shape[2] != kernel:
                continue  # more than one frame
            mat = weight.reshape(weight.shape[0], -1).contiguous()  # (Cout, Cin*K)
            out_shape = (1, weight.shape[0], 1)
        name = f"_npu_linear_{len(done)}_{node.name}"
        gm.register_buffer(name, mat)
        with gm.graph.inserting_before(node):
            flat = gm.graph.call_function(aten.reshape.default, (x, [1, -1]))
            wnode = gm.graph.get_attr(name)
            b = None
            if bias is not None and not transposed:
                b = bias
            lin = gm.graph.call_function(aten.linear.default, (flat, wnode, b))
            out = gm.graph.call_function(aten.reshape.default, (lin, list(out_shape)))
            if bias is not None and transposed:
                out = gm.graph.call_function(aten.add.Tensor, (
                    out, gm.graph.call_function(aten.reshape.default, (bias, [1, -1, 1]))))
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        done.append(f"{node.name}: {'conv_transpose1d' if transposed else 'conv1d'} "
                    f"(kernel {kernel}, one frame) -> linear")
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return done


def _fetch(gm, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach()


def for_npu(module: nn.Module, example: tuple) -> tuple[nn.Module, list[str]]:
    """-> (an equivalent module for the Ethos-U partitioner, the rewrites applied)."""
    module = copy.deepcopy(module).eval()
    rewrites = [f"{p}: AdaptiveAvgPool1d(1) -> mean" for p in _adaptive_avg_to_mean(module)]
    rewrites += [f"{p}: GroupNorm -> mean/rsqrt" for p in _replace(
        module, lambda m: type(m) is nn.GroupNorm, ExplicitGroupNorm)]
    gm = torch.export.export(module, tuple(example)).module(check_guards=False)
    rewrites += _single_frame_convs_to_linear(gm, tuple(example))
    return (gm if rewrites else module), rewrites


def for_cmsis_nn(module: nn.Module, example: tuple) -> tuple[nn.Module, list[str]]:
    """-> (an equivalent module for CMSIS-NN, the rewrites applied)."""
    module = copy.deepcopy(module).eval()
    rewrites = [f"{p}: AdaptiveAvgPool1d(1) -> mean" for p in _adaptive_avg_to_mean(module)]
    rewrites += [f"{p}: Conv1d -> Conv2d (B, C, 1, T)" for p in _replace(
        module, lambda m: type(m) is nn.Conv1d, Conv1dAs2d)]
    return module, rewrites


__all__ = ["Conv1dAs2d", "ExplicitGroupNorm", "MeanPool1d", "for_cmsis_nn", "for_npu"]
