"""The augmentations that make new training voices do what their names say."""

import numpy as np
import pytest
from avedge.models.corpus import augment as A

SR = A.SAMPLE_RATE


def _voice(f0: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)).astype(np.float32)


def _f0(x: np.ndarray) -> float:
    """Strongest spectral peak between 80 and 400 Hz, to 0.25 Hz (zero-padded FFT)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=4 * SR))
    f = np.fft.rfftfreq(4 * SR, 1 / SR)
    band = (f > 80) & (f < 400)
    return float(f[band][np.argmax(spec[band])])


@pytest.mark.parametrize("semitones", [-3.0, -1.0, 2.0, 3.0])
def test_pitch_shift_moves_the_pitch_and_keeps_the_duration(semitones):
    x = _voice(150.0)
    y = A.pitch_shift(x, semitones)
    assert y.shape == x.shape and y.dtype == np.float32
    want = 150.0 * 2 ** (semitones / 12)
    assert abs(_f0(y[SR // 4: -SR // 4]) - want) < 1.0, (_f0(y), want)
    assert 0.5 < A.rms(y) / A.rms(x) < 2.0  # level kept


def test_speed_changes_tempo_and_pitch_together():
    x = _voice(150.0)
    y = A.speed(x, 1.1)
    assert abs(len(y) - len(x) / 1.1) <= 2
    assert abs(_f0(y) - 165.0) < 1.0


def _envelope_centroid(x: np.ndarray) -> float:
    """Spectral centroid of the whole signal (Hz): follows the formants, not the pitch."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float((spec * f).sum() / spec.sum())


@pytest.mark.parametrize("alpha", [0.88, 1.14])
def test_formant_warp_moves_the_envelope_and_keeps_the_pitch(alpha):
    # A voice-like signal: 150 Hz harmonics shaped by a formant at 700 Hz.
    t = np.arange(2 * SR) / SR
    x = sum(np.sin(2 * np.pi * k * 150 * t) * np.exp(-((k * 150 - 700) / 400) ** 2)
            for k in range(1, 40)).astype(np.float32)
    y = A.formant_warp(x, alpha)
    assert y.shape == x.shape and y.dtype == np.float32
    # The pitch stays: the strongest spectral lines are still the 150 Hz harmonics.
    spec = np.abs(np.fft.rfft(y[SR // 4: -SR // 4] * np.hanning(SR * 3 // 2), n=4 * SR))
    f = np.fft.rfftfreq(4 * SR, 1 / SR)
    peaks = f[np.argsort(spec)[-40:]]
    assert np.all(np.abs(peaks / 150 - np.round(peaks / 150)) * 150 < 3.0), peaks
    shift = _envelope_centroid(y) / _envelope_centroid(x)
    assert (shift - 1) * (alpha - 1) > 0 and abs(shift - 1) > 0.04, shift  # envelope moves


def test_band_limit_removes_lows_and_highs():
    rng = np.random.default_rng(0)
    x = A.colored_noise(2 * SR, "white", rng)
    for seed in range(5):
        y = A.band_limit(x, np.random.default_rng(seed))
        spec = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(len(y), 1 / SR)
        mid = spec[(f > 500) & (f < 2500)].mean()
        assert spec[f < 30].mean() < mid / 10 and spec[f > 7900].mean() < mid / 10


def test_codec_is_lossy_but_aligned_with_its_input():
    x = _voice(150.0) * 0.3
    for seed in range(3):  # each draws a codec and a bitrate
        y = A.codec(x, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        g = float(np.dot(y, x) / np.dot(x, x))
        snr = 10 * np.log10(np.sum((g * x) ** 2) / np.sum((y - g * x) ** 2))
        assert 3 < snr < 60, snr  # changed by the codec, yet the same signal in place
        assert 0.5 < g < 1.5
