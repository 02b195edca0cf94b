"""Speaker encoder: a noisy enrollment clip (<= 5 s) -> one unit-norm speaker embedding.

Runs once per enrollment, so it is not streaming. It takes a fixed-length clip
(ENROLL_SAMPLES); shorter clips are looped to that length by `fit_enrollment` (looping
keeps the statistics that mean/std pooling sees), longer ones are trimmed to their
loudest ENROLL_SAMPLES window. The runtime does the same in numpy.

    wav (B, ENROLL_SAMPLES) -> conv-STFT log power (B, F, T) - per-clip mean
        -> 3 x [conv1d k=5 + GroupNorm + ReLU] (B, C, T)
        -> energy-weighted mean & std pooling (B, 2C) -> Linear -> L2 norm (B, E)

With `SpeakerDims.memory_tokens` K > 0 it also keeps an *enrollment memory* (issue #19:
one global vector tells two real people apart less well than two synthetic voices, and
after USEF-TSE the separator does better when it can compare the mixture with the
enrollment frame by frame): K learned queries attend over the enrollment's frames (silence
down-weighted by frame energy), and the K pooled tokens become attention keys and values
(K x M each) that the extractor's frames attend to (model.MemoryAttention). The encoder
runs once per enrollment, so the keys/values are computed there, not per 8 ms chunk. The
condition stays one flat vector so the runtime and every artifact keep one condition input:

    condition (B, E + 2*K*M) = [embedding (E, unit norm) | keys (K*M) | values (K*M)]
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
    memory_tokens: int = 0  # K enrollment tokens the extractor attends to (0: off)
    memory_dim: int = 64  # M, their key/value width

    @property
    def condition_dim(self) -> int:
        """Width of the encoder's output: the embedding, then the memory's keys and values."""
        return self.emb_dim + 2 * self.memory_tokens * self.memory_dim


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
        if d.memory_tokens:
            self.mem_queries = nn.Parameter(torch.randn(d.memory_tokens, d.channels)
                                            / d.channels ** 0.5)
            self.mem_norm = nn.LayerNorm(d.channels)
            self.mem_key = nn.Linear(d.channels, d.memory_dim)
            self.mem_value = nn.Linear(d.channels, d.memory_dim)

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
        emb = F.normalize(self.proj(torch.cat([mean, std], dim=1)), dim=1)  # (B, E)
        if not self.dims.memory_tokens:
            return emb
        # K queries over the frames; log frame weights keep silence out of every token.
        scores = torch.einsum("kc,bct->bkt", self.mem_queries, h) / self.dims.channels ** 0.5
        a = torch.softmax(scores + torch.log(w + 1e-9), dim=2)  # (B, K, T)
        tokens = self.mem_norm(torch.einsum("bkt,bct->bkc", a, h))  # (B, K, C)
        keys, values = self.mem_key(tokens), self.mem_value(tokens)  # (B, K, M)
        return torch.cat([emb, keys.flatten(1), values.flatten(1)], dim=1)

    def split(self, condition: torch.Tensor):
        """(B, condition_dim) -> embedding (B, E), keys (B, K, M), values (B, K, M);
        keys/values are None without a memory."""
        return split_condition(condition, self.dims)


def split_condition(condition: torch.Tensor, d: SpeakerDims):
    """The inverse of the encoder's packing (see the module docstring)."""
    emb = condition[:, : d.emb_dim]
    if not d.memory_tokens:
        return emb, None, None
    km = d.memory_tokens * d.memory_dim
    keys = condition[:, d.emb_dim: d.emb_dim + km].reshape(-1, d.memory_tokens, d.memory_dim)
    values = condition[:, d.emb_dim + km: d.emb_dim + 2 * km].reshape(
        -1, d.memory_tokens, d.memory_dim)
    return emb, keys, values


def grow_encoder(encoder: SpeakerEncoder, smaller: dict[str, torch.Tensor]) -> SpeakerEncoder:
    """Load an encoder's state dict that may lack the enrollment memory (weights trained
    before it): the memory starts from its initialisation, the embedding as trained."""
    missing, unexpected = encoder.load_state_dict(smaller, strict=False)
    if unexpected or any(not k.startswith("mem_") for k in missing):
        raise ValueError(f"speaker encoder weights: missing {missing}, unexpected {unexpected}")
    return encoder


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
