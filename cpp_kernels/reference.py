"""Reference implementations of the avedge ops in plain PyTorch (float32 math).

These define the semantics: the C++/CUDA kernels, the ExecuTorch kernels and the ONNX
decompositions are all tested against them. They are also the fallback CPU kernels when no
C++ compiler is available. Written with standard aten ops only, so they also serve as export
decompositions (see ``decompositions()`` in ops.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _cross_mask(pos_q: Tensor, pos_k: Tensor, window: float) -> Tensor:
    # (Tq, Tk) bool: key visible to query. Same float32 arithmetic as the kernels.
    pq = pos_q.to(torch.float32)
    pk = pos_k.to(torch.float32)
    return (pq[:, None] - pk[None, :]).abs() <= window


def _attend(q: Tensor, k_self: Tensor, v_self: Tensor, k_other: Tensor, v_other: Tensor,
            cross: Tensor, scale: float) -> Tensor:
    # q, k_self, v_self: (B, H, Tq, D); k_other, v_other: (B, H, To, D); cross: (Tq, To).
    # One softmax over [own stream | visible part of the other stream]; only the (Tq, To)
    # cross mask exists, never the (Ta+Tm)^2 joint one.
    s_self = torch.matmul(q, k_self.transpose(-1, -2)) * scale  # (B, H, Tq, Tq)
    s_cross = torch.matmul(q, k_other.transpose(-1, -2)) * scale  # (B, H, Tq, To)
    s_cross = s_cross.masked_fill(~cross, float("-inf"))
    p = torch.softmax(torch.cat([s_self, s_cross], dim=-1), dim=-1)
    tq = k_self.shape[-2]
    return torch.matmul(p[..., :tq], v_self) + torch.matmul(p[..., tq:], v_other)


def joint_attention(q_a: Tensor, k_a: Tensor, v_a: Tensor, q_m: Tensor, k_m: Tensor,
                    v_m: Tensor, pos_a: Tensor, pos_m: Tensor, window: float,
                    scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Joint audio/motion attention. Returns (out_a (B,H,Ta,D), out_m (B,H,Tm,D))."""
    dtype = q_a.dtype
    f = [t.to(torch.float32) for t in (q_a, k_a, v_a, q_m, k_m, v_m)]
    qa, ka, va, qm, km, vm = f
    scale = 1.0 / math.sqrt(q_a.shape[-1]) if scale is None else scale
    cross_am = _cross_mask(pos_a, pos_m, window)  # (Ta, Tm)
    out_a = _attend(qa, ka, va, km, vm, cross_am, scale)
    out_m = _attend(qm, km, vm, ka, va, cross_am.transpose(0, 1), scale)
    return out_a.to(dtype), out_m.to(dtype)


def flow_step(x: Tensor, v_c: Tensor, v_u: Tensor | None, x_pred: Tensor | None, dt: float,
              guidance: float = 1.0) -> Tensor:
    """g = v_c, or v_u + guidance*(v_c - v_u); out = x + dt*g, or (x + x_pred + dt*g)/2."""
    g = v_c.to(torch.float32)
    if v_u is not None:
        u = v_u.to(torch.float32)
        g = u + guidance * (g - u)
    xf = x.to(torch.float32)
    if x_pred is None:
        out = xf + dt * g
    else:
        out = 0.5 * (xf + x_pred.to(torch.float32) + dt * g)
    return out.to(x.dtype)


def mouth_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp by a pixel displacement field, border (clamped) sampling.

    image: (B, C, H, W); flow: (B, 2, H, W), flow[:, 0] = dx, flow[:, 1] = dy.
    """
    B, C, H, W = image.shape
    img = image.to(torch.float32)
    fl = flow.to(torch.float32)
    ys = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, W)
    sx = (xs + fl[:, 0]).clamp(0, W - 1)  # (B, H, W)
    sy = (ys + fl[:, 1]).clamp(0, H - 1)
    x0 = sx.floor()
    y0 = sy.floor()
    wx = (sx - x0)[:, None]  # (B, 1, H, W)
    wy = (sy - y0)[:, None]
    x0 = x0.long()
    y0 = y0.long()
    x1 = (x0 + 1).clamp(max=W - 1)
    y1 = (y0 + 1).clamp(max=H - 1)
    flat = img.reshape(B, C, H * W)

    def tap(yy: Tensor, xx: Tensor) -> Tensor:
        idx = (yy * W + xx).reshape(B, 1, H * W).expand(B, C, H * W)
        return flat.gather(2, idx).reshape(B, C, H, W)

    out = ((1 - wy) * ((1 - wx) * tap(y0, x0) + wx * tap(y0, x1))
           + wy * ((1 - wx) * tap(y1, x0) + wx * tap(y1, x1)))
    return out.to(image.dtype)
