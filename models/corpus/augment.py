"""Audio augmentation and noise for mixtures. All functions are pure given a Generator.

Budget: a whole mixture must cost < 50 ms on one core (issue #3: >= 20 utterances/s per
core), so everything is an FFT, a polyphase resample or a short convolution. Rooms come
from a small bank of pyroomacoustics impulse responses computed once per seed (image
source, order <= 12: ~2 ms each) instead of a room per mixture.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
from avedge.runtime.audio_io import SAMPLE_RATE
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve, istft, resample_poly, stft

SPEEDS = {0.9: (10, 9), 0.95: (20, 19), 1.0: (1, 1), 1.05: (20, 21), 1.1: (10, 11)}  # up/down
N_RIRS = 32
EARLY_MS = 50  # the target keeps the direct path plus early reflections
NOISE_TYPES = ("white", "pink", "brown", "babble")
EPS = 1e-8


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + EPS))


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation (tempo and pitch together): resample, play at 16 k."""
    up, down = SPEEDS[factor]
    return x if up == down else resample_poly(x, up, down).astype(np.float32)


def pitch_shift(x: np.ndarray, semitones: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Pitch without tempo: phase-vocoder stretch by r, then resample by 1/r.

    Vectorised phase vocoder (the librosa formulation): magnitudes interpolated between
    frames, phase advanced by the cumulative measured instantaneous frequency.
    """
    r = 2.0 ** (semitones / 12.0)
    if abs(r - 1) < 1e-3 or len(x) < n_fft:
        return x
    _, _, X = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros")  # (F, N)
    steps = np.arange(0, X.shape[1] - 1, 1.0 / r)  # stretch by r: more frames
    k = steps.astype(int)
    a = (steps - k)[None, :]
    mag = (1 - a) * np.abs(X[:, k]) + a * np.abs(X[:, k + 1])
    omega = np.linspace(0, np.pi * hop, X.shape[0])[:, None]  # expected advance per hop
    dphi = np.angle(X[:, k + 1]) - np.angle(X[:, k]) - omega
    dphi = dphi - 2 * np.pi * np.round(dphi / (2 * np.pi)) + omega
    phase = np.angle(X[:, :1]) + np.concatenate(
        [np.zeros((X.shape[0], 1)), np.cumsum(dphi[:, :-1], axis=1)], axis=1)
    _, y = istft(mag * np.exp(1j * phase), nperseg=n_fft, noverlap=n_fft - hop)
    # Resample the stretched signal back to the original duration: pitch moves by r.
    # Back to len(x) samples by a polyphase filter at the nearest small ratio (error
    # < 1e-4: far below a cent); an FFT resample between coprime lengths is 10x slower.
    ratio = Fraction(len(x), len(y)).limit_denominator(400)
    out = resample_poly(y, ratio.numerator, ratio.denominator).astype(np.float32)[: len(x)]
    return np.pad(out, (0, len(x) - len(out)))


def eq(x: np.ndarray, rng: np.random.Generator, max_db: float = 8.0) -> np.ndarray:
    """Random smooth spectral tilt/bumps: gains (dB) at 6 log-spaced points, interpolated."""
    # A fast FFT length (an utterance's length may be prime: 10x slower), zero-padded; the
    # smooth gain curve has a short impulse response, so the padding hardly wraps.
    n = next_fast_len(len(x), real=True)
    X = np.fft.rfft(x, n=n)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    pts = np.geomspace(100, SAMPLE_RATE / 2, 6)
    gains_db = rng.uniform(-max_db, max_db, size=6)
    g = 10 ** (np.interp(np.log(np.maximum(f, 50)), np.log(pts), gains_db) / 20)
    return np.fft.irfft(X * g, n=n)[: len(x)].astype(np.float32)


def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """white / pink (1/f) / brown (1/f^2) noise, unit RMS."""
    white = rng.standard_normal(n).astype(np.float32)
    if kind == "white":
        return white / rms(white)
    alpha = {"pink": 1.0, "brown": 2.0}[kind]
    X = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    X *= 1.0 / np.maximum(f, 20.0) ** (alpha / 2)
    y = np.fft.irfft(X, n=n).astype(np.float32)
    return y / rms(y)


@functools.lru_cache(maxsize=4)
def rir_bank(seed: int) -> tuple[np.ndarray, ...]:
    """N_RIRS room impulse responses (rooms 3-9 m, RT60 0.15-0.7 s), deterministic."""
    from avedge.models.corpus.packed import packed_rirs

    packed = packed_rirs(seed)  # computed elsewhere (a GPU machine has no pyroomacoustics)
    if packed is not None:
        return packed
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, 7041])
    out = []
    for _ in range(N_RIRS):
        dim = np.array([rng.uniform(3, 9), rng.uniform(3, 7), rng.uniform(2.4, 3.5)])
        rt60 = rng.uniform(0.15, 0.7)
        try:
            e_abs, order = pra.inverse_sabine(rt60, dim)
        except ValueError:  # room too small for that RT60: take a drier one
            e_abs, order = pra.inverse_sabine(0.2, dim)
        room = pra.ShoeBox(dim, fs=SAMPLE_RATE, materials=pra.Material(e_abs),
                           max_order=min(order, 12))
        room.add_source(rng.uniform([0.5, 0.5, 1.2], dim - [0.5, 0.5, 0.8]))
        room.add_microphone(rng.uniform([0.5, 0.5, 1.0], dim - [0.5, 0.5, 0.8]))
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float32)
        out.append(h / (np.abs(h).max() + EPS))
    return tuple(out)


def reverb(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (reverberant, early) both len(x), aligned to the direct path (no added delay)."""
    d = int(np.argmax(np.abs(h)))
    h = h[d:]
    early = h[: int(EARLY_MS * SAMPLE_RATE / 1000)]
    wet = fftconvolve(x, h)[: len(x)].astype(np.float32)
    dry = fftconvolve(x, early)[: len(x)].astype(np.float32)
    return wet, dry


def scale_to_ratio(ref: np.ndarray, other: np.ndarray, db: float) -> np.ndarray:
    """Scale `other` so that 10 log10(P_ref / P_other) = db."""
    return other * (rms(ref) / (rms(other) * 10 ** (db / 20)))


# --- recording realism (issue #19): what a real microphone, room and codec do to a voice ----

CODECS = (("libopus", "ogg", (8000, 24000)), ("libmp3lame", "mp3", (16000, 40000)),
          ("aac", "adts", (16000, 40000)))
MAX_CODEC_DELAY = 4000  # samples searched for the codec's own delay (mp3: ~1100, aac: 1024)


def band_limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A microphone/channel: high-pass at 50-300 Hz and low-pass at 3-7.6 kHz (Butterworth,
    order 2-4); one draw in five is a telephone band (300-3400 Hz)."""
    from scipy.signal import butter, sosfilt

    if rng.random() < 0.2:
        lo, hi = 300.0, 3400.0
    else:
        lo, hi = float(rng.uniform(50, 300)), float(rng.uniform(3000, 7600))
    order = int(rng.integers(2, 5))
    sos = butter(order, [lo, hi], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def codec(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Encode and decode with a lossy codec at a low bitrate (Opus 8-24 kb/s, MP3 or AAC
    16-40 kb/s) through PyAV's bundled encoders; the codec's delay is found by
    cross-correlation and removed, so the output lines up with x (same length)."""
    import io

    import av

    name, fmt, rates = CODECS[int(rng.integers(len(CODECS)))]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        st = out.add_stream(name, rate=SAMPLE_RATE, layout="mono")
        st.bit_rate = int(rng.integers(*rates))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, :], np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for pkt in list(st.encode(frame)) + list(st.encode(None)):
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf) as inp:
        rate = inp.streams.audio[0].codec_context.sample_rate  # Opus decodes at 48 kHz
        y = np.concatenate([f.to_ndarray().reshape(f.samples, -1).mean(axis=1)
                            for f in inp.decode(audio=0)]).astype(np.float32)
    if rate != SAMPLE_RATE:
        y = resample_poly(y, SAMPLE_RATE, rate).astype(np.float32)
    n = len(x)
    m = min(len(y), n + MAX_CODEC_DELAY)
    corr = fftconvolve(y[:m], x[::-1], mode="full")[n - 1: n - 1 + MAX_CODEC_DELAY]
    lag = int(np.argmax(corr)) if len(corr) else 0
    out = y[lag: lag + n]
    return np.pad(out, (0, n - len(out))).astype(np.float32)


def formant_warp(x: np.ndarray, alpha: float, n_fft: int = 512, hop: int = 128,
                 n_ceps: int = 30) -> np.ndarray:
    """Spectral-envelope (vocal-tract length) warp by alpha with the pitch kept: each
    frame's cepstrally smoothed envelope is resampled along frequency (f -> f / alpha) and
    the spectrum multiplied by warped / original envelope. alpha > 1: a shorter tract."""
    if abs(alpha - 1) < 1e-3 or len(x) < n_fft:
        return x
    _, _, X = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros")  # (F, N)
    logmag = np.log(np.abs(X) + 1e-6)
    ceps = np.fft.irfft(logmag, axis=0)  # (n_fft, N): real cepstrum per frame
    ceps[n_ceps: n_fft - n_ceps + 1] = 0.0  # lifter: keep the envelope
    env = np.fft.rfft(ceps, axis=0).real  # (F, N) log envelope
    bins = np.arange(X.shape[0], dtype=np.float64)
    src = np.clip(bins / alpha, 0, X.shape[0] - 1)
    k = src.astype(int)
    k1 = np.minimum(k + 1, X.shape[0] - 1)
    a = (src - k)[:, None]
    warped = (1 - a) * env[k] + a * env[k1]
    gain = np.exp(np.clip(warped - env, -4.0, 4.0))  # +-35 dB at most
    _, y = istft(X * gain, nperseg=n_fft, noverlap=n_fft - hop)
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)
