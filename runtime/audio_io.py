"""Audio files in and out for the runtime: numpy + soundfile, no torch.

    >>> from avedge.runtime.audio_io import read_audio, write_audio     # doctest: +SKIP
    >>> clip = read_audio("mix.wav", sample_rate=16000)   # any rate/channels/bit depth
    >>> clip.samples.shape, clip.source_rate               # doctest: +SKIP
    ((64000,), 44100)
    >>> write_audio("out.wav", y, 16000, rate=clip.source_rate)          # doctest: +SKIP

Documented handling of awkward files:
  - any sample rate: resampled (polyphase windowed sinc) to the requested rate;
  - several channels: averaged to mono (`AudioClip.channels` keeps the original count);
  - 8-bit (unsigned), 16/24/32-bit PCM and float files: read as float32 in [-1, 1];
  - missing, unreadable or empty files, and NaN/inf samples: `InputError`;
  - clipping: kept, and reported in `AudioClip.clipped_fraction` (the caller may warn).
Writes are atomic: a temporary file in the same folder, then os.replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from avedge.runtime.errors import InputError
from avedge.runtime.fsutil import atomic_path

# The rate every avedge audio model runs at: the one definition (models import it).
SAMPLE_RATE = 16000
CLIP_LEVEL = 0.999  # |x| at or above this counts as clipped
FILTER_HALF_TAPS = 16  # zero crossings of the sinc kept on each side
KAISER_BETA = 8.0
BLOCK = 1 << 15  # output samples resampled per vectorised block


@dataclass
class AudioClip:
    samples: np.ndarray  # (T,) float32 mono at `sample_rate`
    sample_rate: int
    source_rate: int
    channels: int
    subtype: str  # soundfile subtype of the source, e.g. PCM_16, PCM_24, PCM_U8, FLOAT
    clipped_fraction: float

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def read_audio(path, sample_rate: int | None = SAMPLE_RATE, what: str = "input") -> AudioClip:
    """Read a sound file as mono float32, resampled to `sample_rate` (None: keep its rate)."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {str(p)!r} does not exist")
    try:
        info = sf.info(str(p))
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as exc:
        raise InputError(f"cannot read {what} file {str(p)!r} as audio ({exc}); give a WAV, "
                         "FLAC or OGG file") from exc
    if data.shape[0] == 0:
        raise InputError(f"{what} file {str(p)!r} is empty (no samples)")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad.any(axis=1))[0, 0])
        raise InputError(f"{what} file {str(p)!r} has {int(bad.sum())} NaN/inf samples (first at "
                         f"{first / rate:.3f} s); the file is corrupt, fix or re-export it")
    clipped = float(np.mean(np.abs(data) >= CLIP_LEVEL))
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    target = rate if sample_rate is None else sample_rate
    return AudioClip(resample(mono, rate, target), target, int(rate), int(data.shape[1]),
                     str(info.subtype), clipped)


def write_audio(path, samples: np.ndarray, sample_rate: int, rate: int | None = None,
                subtype: str = "PCM_16") -> Path:
    """Write mono `samples` (at sample_rate) to `path` at `rate` (default: the same),
    atomically. PCM subtypes are clipped to [-1, 1]."""
    import soundfile as sf

    p = Path(path)
    y = np.asarray(samples, np.float32).reshape(-1)
    if rate is not None and rate != sample_rate:
        y = resample(y, sample_rate, rate)
    rate = rate or sample_rate
    if subtype.startswith("PCM"):
        y = np.clip(y, -1.0, 1.0)
    if p.parent and not p.parent.exists():
        raise InputError(f"output folder {str(p.parent)!r} does not exist")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"output {str(p)!r}: give a .wav, .flac or .ogg file name")
    if fmt != "WAV" and subtype not in ("PCM_16", "PCM_24", "VORBIS"):
        subtype = "PCM_16" if fmt == "FLAC" else "VORBIS"
    with atomic_path(p) as tmp:
        sf.write(str(tmp), y, rate, subtype=subtype, format=fmt)
    return p


def output_subtype(source_subtype: str) -> str:
    """The subtype to write a result in, following the source where that makes sense."""
    return source_subtype if source_subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT") \
        else "PCM_16"


def _kaiser_sinc(up: int, down: int) -> tuple[np.ndarray, int]:
    """Low-pass prototype at the upsampled rate; -> (taps, half length)."""
    factor = max(up, down)
    half = FILTER_HALF_TAPS * factor
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 1.0 / factor  # relative to the upsampled Nyquist
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, KAISER_BETA)
    return h * up, half


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase windowed-sinc resampling (what scipy.signal.resample_poly computes, with
    a Kaiser window), in numpy. Output length ceil(len(x) * rate_out / rate_in)."""
    x = np.asarray(x, np.float32).reshape(-1)
    if rate_in == rate_out or len(x) == 0:
        return x.copy()
    if rate_in <= 0 or rate_out <= 0:
        raise InputError(f"sample rates must be positive; got {rate_in} -> {rate_out}")
    g = gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    h, half = _kaiser_sinc(up, down)
    n_out = -(-len(x) * up // down)
    n_taps = 2 * half // up + 1
    # Output m sits at pos = m*down on the upsampled grid; its first input index is
    # k0 = ceil((pos - half) / up) and the taps it needs depend only on the phase
    # r = k0*up - (pos - half) in [0, up): one row of `table` per phase.
    j = np.arange(n_taps)
    r = np.arange(up)[:, None]
    idx = 2 * half - r - j[None, :] * up  # (up, taps)
    table = np.where(idx >= 0, h[np.clip(idx, 0, 2 * half)], 0.0).astype(np.float32)
    pad = n_taps + half // up + 1
    xp = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(pad + n_taps, np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(xp, n_taps)  # (len, taps) view
    out = np.empty(n_out, np.float32)
    for s in range(0, n_out, BLOCK):
        pos = np.arange(s, min(s + BLOCK, n_out), dtype=np.int64) * down
        k0 = -(-(pos - half) // up)
        phase = k0 * up - (pos - half)
        out[s: s + len(pos)] = np.einsum("mt,mt->m", windows[k0 + pad], table[phase])
    return out
