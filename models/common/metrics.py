"""Metrics every family's training, evaluation and benchmarks share (torch).

The runtime keeps its own numpy SI-SDR (runtime/pipelines/extraction.py `si_sdr_db`):
`avedge extract --reference` and the export-time measure score audio where torch may be
absent, and the runtime may not import avedge.models. tests/test_api.py checks that
the two agree.
"""

from __future__ import annotations

import torch


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis (zero-mean): (..., L) -> (...)."""
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10(((target * target).sum(-1) + eps) / ((noise * noise).sum(-1) + eps))


def si_sdri(est: torch.Tensor, ref: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """SI-SDR improvement of `est` over the unprocessed `mixture` (dB), per signal."""
    return si_sdr(est, ref) - si_sdr(mixture, ref)


def standard_error(x) -> float:
    """Standard error of the mean of a 1-D sample (nan for fewer than 2 values)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return float(x.std() / len(x) ** 0.5) if len(x) > 1 else float("nan")
