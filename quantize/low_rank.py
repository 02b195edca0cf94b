"""Low-rank factorisation: W (out x in) ~ U_r S_r V_r^T, one layer becomes two smaller ones.

A Linear (or a kernel-1 Conv1d, the same matrix applied per time step) of in -> out is
replaced by in -> rank -> out, each factor carrying sqrt(S_r) so both have the same
scale (better for int8 afterwards). It saves weights, and on a bandwidth-bound device
time, only when rank * (in + out) < in * out: a layer where it would not is left alone.

nn.MultiheadAttention fuses q/k/v into one parameter and reads `out_proj.weight` directly,
so its projections cannot be factorised in place: each is first swapped for the
equivalent SplitAttention (quantize/attention.py, separate q/k/v/out Linears), which
torch.export and both lowerings take. `layers="attention"` reaches the projections of
any attention module (SplitAttention, a class named *Attention*/*Attn*, or a layer named
like q_proj/attn.*), and nothing else: LR-SMS found attention tolerates low rank better
than the feed-forward layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from avedge.quantize.api import register_handler
from avedge.quantize.configs import register_config
from avedge.runtime.errors import AvedgeError

LAYER_SETS = ("all", "attention")
# A layer counts as attention when a part of its qualified name says so (q/k/v/output
# projections of the usual transformer code).
_ATTENTION_PARTS = ("attn", "attention")
_ATTENTION_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv", "query", "key", "value",
                     "wq", "wk", "wv", "wo")


@register_config
@dataclass(frozen=True)
class LowRankConfig:
    """Factorise nn.Linear and kernel-1 nn.Conv1d layers by SVD. Give exactly one of
    `rank_ratio` (rank = ceil(ratio * min(in, out))) or `energy` (the smallest rank that
    keeps this fraction of sum(sigma^2)). `layers`: "all" or "attention"."""

    rank_ratio: float | None = None
    energy: float | None = None
    layers: str = "all"

    def __post_init__(self):
        if (self.rank_ratio is None) == (self.energy is None):
            raise ValueError("LowRankConfig takes exactly one of rank_ratio or energy")
        for name in ("rank_ratio", "energy"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
        if self.layers not in LAYER_SETS:
            raise ValueError(f"layers must be one of {LAYER_SETS}, got {self.layers!r}")


def _matrix(layer):
    w = layer.weight.detach()
    return w.reshape(w.shape[0], w.shape[1])  # Conv1d (out, in, 1) -> (out, in)


def factorizable(layer) -> bool:
    from torch import nn

    if type(layer) is nn.Linear:
        return True
    return (type(layer) is nn.Conv1d and layer.kernel_size == (1,) and layer.groups == 1
            and layer.padding_mode == "zeros")


def rank_for(layer, config: LowRankConfig) -> int:
    import torch

    out_f, in_f = _matrix(layer).shape
    if config.rank_ratio is not None:
        return max(1, math.ceil(config.rank_ratio * min(out_f, in_f)))
    s2 = torch.linalg.svdvals(_matrix(layer).double()) ** 2
    kept = torch.cumsum(s2, 0) / s2.sum().clamp_min(1e-300)
    return int(torch.searchsorted(kept, torch.tensor(config.energy, dtype=kept.dtype))) + 1


def saves_parameters(layer, rank: int) -> bool:
    out_f, in_f = _matrix(layer).shape
    return rank * (in_f + out_f) < in_f * out_f


def factorize(layer, rank: int):
    """-> nn.Sequential(down, up): in -> rank (no bias), rank -> out (the layer's bias),
    computing the rank-`rank` approximation of `layer`."""
    import torch
    from torch import nn

    w = _matrix(layer)
    out_f, in_f = w.shape
    if not 1 <= rank <= min(out_f, in_f):
        raise ValueError(f"rank must be in 1..{min(out_f, in_f)}, got {rank}")
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    root = s[:rank].sqrt()
    down_w = (root[:, None] * vh[:rank]).to(w.dtype)
    up_w = (u[:, :rank] * root[None, :]).to(w.dtype)
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        down, up = nn.Linear(in_f, rank, bias=False), nn.Linear(rank, out_f, bias=has_bias)
    else:  # kernel-1 Conv1d: stride and padding stay on the first factor
        down = nn.Conv1d(in_f, rank, 1, stride=layer.stride, padding=layer.padding, bias=False)
        up = nn.Conv1d(rank, out_f, 1, bias=has_bias)
        down_w, up_w = down_w[..., None], up_w[..., None]
    with torch.no_grad():
        down.weight.copy_(down_w)
        up.weight.copy_(up_w)
        if has_bias:
            up.bias.copy_(layer.bias.detach())
    return nn.Sequential(down, up)


def _is_attention(name: str, parent) -> bool:
    from avedge.quantize.attention import SplitAttention

    kind = type(parent).__name__.lower()  # SelfAttention, LlamaAttention, MultiHeadAttn
    parts = name.lower().split(".")
    return (isinstance(parent, SplitAttention) or kind.endswith(_ATTENTION_PARTS)
            or any(a in p for p in parts for a in _ATTENTION_PARTS)
            or parts[-1] in _ATTENTION_LEAVES)


def _candidates(model, layers: str) -> list[tuple[object, str, str]]:
    """(parent, attribute, qualified name) of each layer the config may factorise."""
    from avedge.quantize.attention import split_attention

    split_attention(model)  # nn.MultiheadAttention -> separate, factorisable projections
    found = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            name = f"{parent_name}.{attr}" if parent_name else attr
            if factorizable(child) and (layers == "all" or _is_attention(name, parent)):
                found.append((parent, attr, name))
    return found


@register_handler(LowRankConfig)
def low_rank(model, config: LowRankConfig):
    candidates = _candidates(model, config.layers)
    done, skipped = 0, []
    for parent, attr, name in candidates:
        layer = getattr(parent, attr)
        rank = rank_for(layer, config)
        if saves_parameters(layer, rank):
            setattr(parent, attr, factorize(layer, rank))
            done += 1
        else:
            skipped.append(name)
    if not done:
        what = ("no nn.Linear or kernel-1 nn.Conv1d" if not candidates else
                f"no layer where rank * (in + out) < in * out (skipped: {', '.join(skipped)})")
        scope = " (layers='attention': attention projections only)" if (
            config.layers == "attention") else ""
        raise AvedgeError(f"LowRankConfig found nothing to factorise in {type(model).__name__}"
                          f"{scope}: {what}; lower rank_ratio/energy or use another recipe")
    return model
