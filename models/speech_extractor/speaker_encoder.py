"""Speaker encoder: a noisy enrollment clip (<= 5 s) -> one unit-norm speaker embedding.

Runs once per enrollment, so it is not streaming. It takes a fixed-length clip
(ENROLL_SAMPLES); shorter clips are looped to that length by `fit_enrollment` (looping
keeps the statistics that mean/std pooling sees), longer ones are trimmed to their
loudest ENROLL_SAMPLES window. The runtime does the same in numpy.

    wav (B, ENROLL_SAMPLES) -> conv-STFT log power (B, F, T) - per-clip mean
        -> 3 x [conv1d k=5 + GroupNorm + ReLU] (B, C, T)
        -> energy-weighted mean & std pooling (B, 2C) -> Linear -> L2 norm (B, E)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avedge.models.common.conv_stft import N_BINS, ConvSTFT
from avedge.runtime.audio_io import SAMPLE_RATE
from torch import nn
from torch.nn import functional as F

ENROLL_SECONDS = 5.0
ENROLL_SAMPLES = int(SAMPLE_RATE * ENROLL_SECONDS)  # 80000 = 625 frames of 8 ms
MIN_ENROLL_SAMPLES = SAMPLE_RATE  # 1 s: shorter enrollments are refused
LOG_EPS = 1e-6


@dataclass
class SpeakerDims:
    channels: int = 128
    emb_dim: int = 128
    kernel: int = 5
    layers: int = 3


class SpeakerEncoder(nn.Module):
    input_names = ("enrollment",)
    output_names = ("speaker",)
    sample_rate = SAMPLE_RATE

    def __init__(self, dims: SpeakerDims | None = None):
        super().__init__()
        self.dims = d = dims or SpeakerDims()
        self.stft = ConvSTFT()
        convs, c_in = [], N_BINS
        for _ in range(d.layers):
            convs += [nn.Conv1d(c_in, d.channels, d.kernel, padding=d.kernel // 2),
                      nn.GroupNorm(1, d.channels), nn.ReLU()]
            c_in = d.channels
        self.convs = nn.Sequential(*convs)
        self.proj = nn.Linear(2 * d.channels, d.emb_dim)

    def forward(self, enrollment: torch.Tensor) -> torch.Tensor:
        # enrollment (B, L), L a multiple of 128
        b = enrollment.shape[0]
        spec, _ = self.stft.analyze(enrollment, torch.zeros(b, self.stft.lookahead))  # (B, 2F, T)
        re, im = spec[:, :N_BINS], spec[:, N_BINS:]
        power = re * re + im * im  # (B, F, T)
        logp = torch.log(power + LOG_EPS)
        feat = logp - logp.mean(dim=2, keepdim=True)  # (B, F, T) channel-mean normalised
        h = self.convs(feat)  # (B, C, T)
        # Frame weights from frame energy: silence and pauses count less.
        energy = torch.log(power.sum(dim=1) + LOG_EPS)  # (B, T)
        w = torch.softmax(energy * 0.25, dim=1)[:, None, :]  # (B, 1, T)
        mean = (h * w).sum(dim=2)  # (B, C)
        var = ((h - mean[:, :, None]) ** 2 * w).sum(dim=2)
        std = torch.sqrt(var + 1e-5)
        emb = self.proj(torch.cat([mean, std], dim=1))  # (B, E)
        return F.normalize(emb, dim=1)


def fit_enrollment(wav: torch.Tensor, n: int = ENROLL_SAMPLES) -> torch.Tensor:
    """(L,) -> (n,): loop a short clip to n samples, or keep the loudest n-sample window."""
    length = wav.shape[0]
    if length >= n:
        if length == n:
            return wav
        hop = SAMPLE_RATE // 4
        energy = torch.cumsum(torch.cat([torch.zeros(1), wav.double() ** 2]), 0)
        starts = torch.arange(0, length - n + 1, hop)
        best = int(starts[torch.argmax(energy[starts + n] - energy[starts])])
        return wav[best: best + n]
    reps = -(-n // length)
    return wav.repeat(reps)[:n]
