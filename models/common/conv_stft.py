"""A causal, streamable STFT written as fixed convolutions (ExecuTorch has no `rfft`).

Analysis is a strided `conv1d` whose kernels are windowed DFT rows; synthesis is the
matching `conv_transpose1d` (overlap-add). The frame (12 ms) is one chunk (8 ms) plus
the lookahead (4 ms), so a chunk is one frame and the output lags the input by exactly
the lookahead:

    frame k covers input samples [HOP*k - LOOKAHEAD, HOP*k + HOP)
    after frame k, output samples [HOP*k - LOOKAHEAD, HOP*k + HOP - LOOKAHEAD) are complete

The windows are square roots of a flat-top window with sin^2 ramps of LOOKAHEAD
samples, so analysis * synthesis overlap-adds to exactly one at hop HOP: an identity
mask reconstructs the input, delayed by LOOKAHEAD.

State (passed explicitly, zeros at the start of a stream):
    in_tail  (B, LOOKAHEAD)  last LOOKAHEAD input samples of the previous call
    out_tail (B, LOOKAHEAD)  overlap-add tail of the previous call's last frame
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

HOP = 128  # 8 ms: one chunk
LOOKAHEAD = 64  # 4 ms
WIN = HOP + LOOKAHEAD  # 192 = 12 ms frame
N_BINS = WIN // 2 + 1  # 97 bins, 83.3 Hz apart


def sqrt_flat_top_window(win: int = WIN, ramp: int = LOOKAHEAD) -> torch.Tensor:
    """(win,) sqrt of a flat top with sin^2 / cos^2 ramps of `ramp` samples (COLA at win-ramp)."""
    n = torch.arange(ramp, dtype=torch.float64)
    up = torch.sin(0.5 * math.pi * (n + 0.5) / ramp)
    flat = torch.ones(win - 2 * ramp, dtype=torch.float64)
    return torch.cat([up, flat, up.flip(0)])


def dft_kernels(win: int = WIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Analysis (2F, 1, win) and synthesis (2F, 1, win) kernels; rows = [real bins; imag bins]."""
    n_bins = win // 2 + 1
    w = sqrt_flat_top_window(win)
    n = torch.arange(win, dtype=torch.float64)
    f = torch.arange(n_bins, dtype=torch.float64)[:, None]
    ang = 2 * math.pi * f * n / win  # (F, win)
    analysis = torch.cat([torch.cos(ang), -torch.sin(ang)]) * w  # (2F, win)
    c = torch.full((n_bins, 1), 2.0, dtype=torch.float64)
    c[0] = 1.0
    if win % 2 == 0:
        c[-1] = 1.0
    synthesis = torch.cat([c * torch.cos(ang), -c * torch.sin(ang)]) / win * w  # (2F, win)
    return analysis.float()[:, None, :], synthesis.float()[:, None, :]


class ConvSTFT(nn.Module):
    """Causal conv-STFT analysis + overlap-add synthesis with explicit state."""

    def __init__(self, hop: int = HOP, lookahead: int = LOOKAHEAD):
        super().__init__()
        self.hop, self.lookahead, self.win = hop, lookahead, hop + lookahead
        self.n_bins = self.win // 2 + 1
        analysis, synthesis = dft_kernels(self.win)
        # Fixed (not trained). Persistent: ExecuTorch's verifier rejects non-persistent buffers.
        self.register_buffer("analysis", analysis)
        self.register_buffer("synthesis", synthesis)

    def analyze(self, x: torch.Tensor, in_tail: torch.Tensor):
        """x (B, L), L a multiple of hop; in_tail (B, lookahead + hop*P) -> spec (B, 2F, P + T),
        new in_tail of the same length. P > 0 past frames come first (deep filtering)."""
        buf = torch.cat([in_tail, x], dim=1)  # (B, tail + L)
        spec = F.conv1d(buf[:, None, :], self.analysis, stride=self.hop)  # (B, 2F, P + T)
        return spec, buf[:, buf.shape[1] - in_tail.shape[1]:]

    def synthesize(self, spec: torch.Tensor, out_tail: torch.Tensor):
        """spec (B, 2F, T); out_tail (B, lookahead) -> y (B, T*hop) lagging by lookahead, new tail."""
        frames = F.conv_transpose1d(spec, self.synthesis, stride=self.hop)[:, 0]  # (B, hop*T + la)
        n = frames.shape[1] - self.lookahead  # hop * T
        head = frames[:, : self.lookahead] + out_tail
        y = torch.cat([head, frames[:, self.lookahead: n]], dim=1)  # (B, hop*T)
        return y, frames[:, n:]

    def init_state(self, batch: int = 1, past_frames: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(in_tail (B, lookahead + hop*past_frames), out_tail (B, lookahead)), zeros."""
        return (torch.zeros(batch, self.lookahead + self.hop * past_frames),
                torch.zeros(batch, self.lookahead))
