"""A small lip-sync-like block that uses all three avedge ops, for the export tests."""

from __future__ import annotations

import torch
from torch import nn

HEADS, HEAD_DIM = 2, 16
TA, TM = 24, 12  # audio tokens at 50 Hz, motion frames at 25 fps
IMAGE = (1, 3, 16, 20)


class KernelBlock(nn.Module):
    def __init__(self):
        super().__init__()
        dim = HEADS * HEAD_DIM
        self.qkv_a = nn.Linear(dim, 3 * dim)
        self.qkv_m = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("pos_a", torch.arange(TA, dtype=torch.float32) * 0.5)
        self.register_buffer("pos_m", torch.arange(TM, dtype=torch.float32))

    def _heads(self, x):  # (B, T, 3*dim) -> 3 x (B, H, T, D), non-contiguous views
        b, t, _ = x.shape
        return x.view(b, t, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, audio, motion, v_u, image, flow):
        # audio: (1, TA, dim); motion: (1, TM, dim); v_u: (1, TM, dim); image/flow: IMAGE-sized
        q_a, k_a, v_a = self._heads(self.qkv_a(audio))
        q_m, k_m, v_m = self._heads(self.qkv_m(motion))
        out_a, out_m = torch.ops.avedge.joint_attention(q_a, k_a, v_a, q_m, k_m, v_m,
                                                        self.pos_a, self.pos_m, 2.0, None)
        v_c = self.proj(out_m.transpose(1, 2).reshape(motion.shape))  # velocity (1, TM, dim)
        x_pred = torch.ops.avedge.flow_step(motion, v_c, v_u, None, 0.125, 2.0)
        x_next = torch.ops.avedge.flow_step(motion, v_c, None, x_pred, 0.125, 1.0)
        warped = torch.ops.avedge.mouth_warp(image, flow)
        return out_a, x_next, warped


def example_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dim = HEADS * HEAD_DIM
    return (torch.randn(1, TA, dim, generator=g), torch.randn(1, TM, dim, generator=g),
            torch.randn(1, TM, dim, generator=g), torch.rand(*IMAGE, generator=g),
            torch.randn(IMAGE[0], 2, *IMAGE[2:], generator=g) * 2)
