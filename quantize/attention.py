"""Multi-head attention with its projections as separate nn.Linear layers, so that low-rank
factorisation and head pruning can reach them.

nn.MultiheadAttention keeps q, k and v in one fused `in_proj_weight` and reads
`out_proj.weight` directly inside F.multi_head_attention_forward: a factorised or
head-pruned projection cannot be put in its place. `split_attention(model)` swaps each
one for `SplitAttention`, which computes the same thing (same call signature and outputs,
tested to float tolerance) with q/k/v/out as plain Linears and `num_heads`, `head_dim`
as attributes its forward reads, so removing heads only changes those numbers.
torch.export and both lowerings (XNNPACK, ONNX) take its plain matmul/softmax graph.
"""

from __future__ import annotations

import torch
from torch import nn


class SplitAttention(nn.Module):
    """Scaled dot-product attention over `num_heads` heads of `head_dim`; the inner width
    num_heads * head_dim may be smaller than the model width once heads are pruned."""

    # Read by nn.TransformerEncoderLayer before its fused fast path (which would read the
    # fused in_proj_weight): these values send it down the path that calls forward below.
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, *, batch_first: bool = False,
                 bias: bool = True, kdim: int | None = None, vdim: int | None = None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        inner = num_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> SplitAttention:
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not "
                             "supported")
        e = mha.embed_dim
        new = cls(e, mha.num_heads, batch_first=mha.batch_first,
                  bias=mha.in_proj_bias is not None, kdim=mha.kdim, vdim=mha.vdim)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                weights = mha.in_proj_weight.detach().split(e)
            else:
                weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
            biases = (mha.in_proj_bias.detach().split(e) if mha.in_proj_bias is not None
                      else (None,) * 3)
            for proj, w, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.train(mha.training)

    def _heads(self, x):  # (B, L, H*Dh) -> (B, H, L, Dh)
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q = self._heads(self.q_proj(query))
        k, v = self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5  # (B, H, Lq, Lk)
        if is_causal and attn_mask is None:
            lq, lk = scores.shape[-2:]
            attn_mask = torch.ones(lq, lk, dtype=torch.bool, device=scores.device).triu(1)
        if attn_mask is not None:  # bool: True = not allowed; float: added (as MHA does)
            attn_mask = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(
                scores.shape[0], -1, *attn_mask.shape[-2:])
            scores = (scores.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype ==
                      torch.bool else scores + attn_mask)
        if key_padding_mask is not None:  # (B, Lk)
            pad = key_padding_mask[:, None, None, :]
            scores = (scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool
                      else scores + pad)
        p = scores.softmax(-1)
        out = (p @ v).transpose(1, 2)  # (B, Lq, H, Dh)
        out = self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (p.mean(1) if average_attn_weights else p)


def split_attention(model) -> int:
    """Replace every nn.MultiheadAttention in `model` by an equivalent SplitAttention, in
    place; -> how many were replaced."""
    done = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, SplitAttention.from_mha(child))
                done += 1
    return done


def attention_modules(model) -> list[tuple[str, nn.Module]]:
    """(name, module) of each attention whose heads can be pruned: SplitAttention, or any
    module with q_proj/k_proj/v_proj/out_proj nn.Linear layers and int `num_heads` and
    `head_dim` attributes that its forward reads (the Hugging Face convention)."""
    found = []
    for name, m in model.named_modules():
        projs = [getattr(m, p, None) for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
        if (all(isinstance(p, nn.Linear) for p in projs)
                and isinstance(getattr(m, "num_heads", None), int)
                and isinstance(getattr(m, "head_dim", None), int)
                and projs[0].out_features == m.num_heads * m.head_dim):
            found.append((name, m))
    return found
