"""Structured pruning: drop whole hidden units of a Linear -> activation -> Linear MLP (or
the channels between two Conv1d layers), physically — the layers get smaller.

A batch-1 NPU streams every weight once per inference, so its time follows the weight
count; zeros inside a matrix do not shorten it (measured with Vela: 50 % unstructured
sparsity, same cycles), removing rows and columns does. Units are ranked by how much
they contribute: on real inputs, mean |activation| times the norm of the weights that
carry it out ("activation"); without data, the norm of the weights that bring it in
times the norm of those that carry it out ("magnitude"). Fine-tune afterwards
(quantize/qat.py) to win back what was cut.

`PruneChannelsConfig` applies this to every pair it finds (`quantize_`); the speech
extractor's NPU trainer calls `unit_importance` / `prune_hidden` directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from avedge.quantize.api import register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError

IMPORTANCE = ("magnitude", "activation")
# Elementwise modules that may sit between the two layers of a pair: pruning a unit before
# them is the same as pruning it after them.
_ELEMENTWISE = ("ReLU", "ReLU6", "GELU", "SiLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU",
                "Hardswish", "Hardtanh", "Mish", "Softplus", "Identity", "Dropout")


@register_config
@dataclass(frozen=True)
class PruneChannelsConfig:
    """Remove `ratio` of the hidden units of every Linear -> act -> Linear pair (modules
    with `fc1`/`fc2`, or consecutive layers of an nn.Sequential) and of the channels
    between consecutive Conv1d layers of an nn.Sequential (BatchNorm1d between them is
    pruned along). "activation" importance needs `module.calibration_inputs()`."""

    ratio: float
    importance: str = "magnitude"

    def __post_init__(self):
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not (
                0 < self.ratio < 1):
            raise ValueError(f"ratio (the fraction of units removed) must be in (0, 1), got "
                             f"{self.ratio!r}")
        if self.importance not in IMPORTANCE:
            raise ValueError(f"importance must be one of {IMPORTANCE}, got {self.importance!r}")


def unit_importance(activations, fc2):
    """activations (..., H) of the hidden layer on real inputs -> importance (H,)."""
    mean_abs = activations.detach().abs().reshape(-1, activations.shape[-1]).mean(0)
    return mean_abs * fc2.weight.detach().norm(dim=0)


def prune_hidden(fc1, fc2, importance, width: int):
    """Keep the `width` most important hidden units: -> (new fc1, new fc2)."""
    hidden = fc1.out_features
    if not 0 < width <= hidden:
        raise ValueError(f"width must be in 1..{hidden} (the current hidden size), got {width}")
    if importance.shape != (hidden,):
        raise ValueError(f"importance has shape {tuple(importance.shape)}, expected ({hidden},)")
    keep = _top(importance, width)
    return _take(fc1, 0, keep), _take(fc2, 1, keep)


def _top(importance, width: int):
    import torch

    return torch.sort(torch.topk(importance, width).indices).values


def _take(layer, dim: int, keep):
    """A copy of a Linear / Conv1d / BatchNorm1d keeping only units `keep` along `dim`
    (0: its outputs, 1: its inputs)."""
    import torch
    from torch import nn

    new = copy.deepcopy(layer)
    with torch.no_grad():
        if isinstance(layer, nn.BatchNorm1d):
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(layer, name)
                if t is not None:
                    setattr(new, name, type(t)(t.detach()[keep].clone())
                            if isinstance(t, nn.Parameter) else t[keep].clone())
            new.num_features = len(keep)
            return new
        new.weight = nn.Parameter(layer.weight.detach().index_select(dim, keep).clone())
        if dim == 0 and layer.bias is not None:
            new.bias = nn.Parameter(layer.bias.detach()[keep].clone())
    size = len(keep)
    if isinstance(layer, nn.Linear):
        new.out_features, new.in_features = (size, layer.in_features) if dim == 0 else (
            layer.out_features, size)
    else:
        new.out_channels, new.in_channels = (size, layer.in_channels) if dim == 0 else (
            layer.out_channels, size)
    return new


@dataclass
class _Pair:
    parent: object  # the module holding both layers
    first: str  # attribute names in `parent`
    second: str
    between: tuple[str, ...] = ()  # BatchNorm1d layers to prune along


def find_pairs(model) -> list[_Pair]:
    """Every Linear -> (elementwise) -> Linear and Conv1d -> (elementwise, BatchNorm1d)
    -> Conv1d whose hidden size can shrink without changing what the model computes
    elsewhere."""
    from torch import nn

    pairs = []
    for module in model.modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear)
                and fc1.out_features == fc2.in_features):
            pairs.append(_Pair(module, "fc1", "fc2"))
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for i, name in enumerate(names):
            first, norms, j = module._modules[name], [], i + 1
            while j < len(names) and (type(module._modules[names[j]]).__name__ in _ELEMENTWISE
                                      or isinstance(module._modules[names[j]], nn.BatchNorm1d)):
                if isinstance(module._modules[names[j]], nn.BatchNorm1d):
                    norms.append(names[j])
                j += 1
            if j < len(names) and _matches(first, module._modules[names[j]], bool(norms)):
                pairs.append(_Pair(module, name, names[j], tuple(norms)))
    return pairs


def _matches(first, second, has_norm: bool) -> bool:
    from torch import nn

    if isinstance(first, nn.Linear) and isinstance(second, nn.Linear):
        return not has_norm and first.out_features == second.in_features
    return (isinstance(first, nn.Conv1d) and isinstance(second, nn.Conv1d)
            and first.groups == second.groups == 1 and first.out_channels == second.in_channels)


def _weight_norms(first, second):
    """(norm of each hidden unit's incoming weights, of its outgoing weights)."""
    w1, w2 = first.weight.detach(), second.weight.detach()
    return (w1.reshape(w1.shape[0], -1).norm(dim=1),
            w2.transpose(0, 1).reshape(w2.shape[1], -1).norm(dim=1))


def _activation_means(model, pairs: list[_Pair]) -> list:
    """Mean |input| of each pair's second layer, per unit, over the model's calibration set."""
    import torch

    if not hasattr(model, "calibration_inputs"):
        raise AvedgeError(f"PruneChannelsConfig(importance='activation') needs real inputs: "
                          f"{type(model).__name__} has no calibration_inputs(); use "
                          f"importance='magnitude'")
    sums = [0.0] * len(pairs)
    counts = [0] * len(pairs)

    def hook(k, conv):
        def record(_module, args):
            x = args[0].detach().abs()
            x = x.transpose(1, -1) if conv else x  # units on the last axis
            sums[k] = sums[k] + x.reshape(-1, x.shape[-1]).sum(0)
            counts[k] += x.reshape(-1, x.shape[-1]).shape[0]
        return record

    handles = []
    for k, p in enumerate(pairs):
        second = getattr(p.parent, p.second)
        handles.append(second.register_forward_pre_hook(
            hook(k, isinstance(second, torch.nn.Conv1d))))
    try:
        with torch.no_grad():
            for batch in model.calibration_inputs():
                model(*batch)
    finally:
        for h in handles:
            h.remove()
    return [s / max(c, 1) for s, c in zip(sums, counts)]


@register_handler(PruneChannelsConfig)
def prune_channels(model, config: PruneChannelsConfig):
    pairs = find_pairs(model)
    if not pairs:
        raise AvedgeError(
            f"PruneChannelsConfig found nothing to prune in {type(model).__name__}: it prunes "
            f"Linear -> activation -> Linear (as fc1/fc2 or consecutive in an nn.Sequential) "
            f"and Conv1d -> activation -> Conv1d in an nn.Sequential")
    means = _activation_means(model, pairs) if config.importance == "activation" else None
    for k, p in enumerate(pairs):
        first, second = getattr(p.parent, p.first), getattr(p.parent, p.second)
        incoming, outgoing = _weight_norms(first, second)
        importance = means[k] * outgoing if means is not None else incoming * outgoing
        hidden = incoming.shape[0]
        width = max(1, round(hidden * (1 - config.ratio)))
        if width == hidden:
            continue
        keep = _top(importance, width)
        setattr(p.parent, p.first, _take(first, 0, keep))
        setattr(p.parent, p.second, _take(second, 1, keep))
        for name in p.between:
            setattr(p.parent, name, _take(getattr(p.parent, name), 0, keep))
    return model
