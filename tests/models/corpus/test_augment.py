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
