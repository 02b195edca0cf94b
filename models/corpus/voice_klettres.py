"""Real recordings of native speakers: Debian's klettres-data (letters and syllables, OGG).

One speaker per language, 28-520 short clips each; an "utterance" chains 4-10 random clips
of one speaker with short pauses, so the extractor hears real people's voices through
real microphones (issue #19). Only the languages we may train on are listed; KLettres'
en, en_GB, de, fr, es and it are reserved for evaluation (models/corpus/real_eval.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from avedge.models.corpus.phonemes import Utterance
from avedge.runtime.errors import AvedgeError

ROOT = Path("/usr/share/klettres")
LANGUAGES = ("cs", "da", "nl", "nb", "nds", "pt_BR", "ru", "uk", "hu", "lt", "he", "ar", "ml",
             "tn")
RESERVED = ("en", "en_GB", "de", "fr", "es", "it")
RATE = 16000
GAP_S = (0.03, 0.25)


def check_language(lang: str) -> None:
    if lang in RESERVED:
        raise AvedgeError(f"KLettres {lang!r} recordings are reserved for evaluation and never "
                          "used for training or validation")
    if lang not in LANGUAGES:
        raise AvedgeError(f"unknown KLettres language {lang!r}; available: {', '.join(LANGUAGES)}")


def trim(x: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence: 10 ms frames below peak + floor_db."""
    if len(x) < 160:
        return x
    frames = np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    loud = np.flatnonzero(frames > frames.max() * 10 ** (floor_db / 20))
    return x[loud[0] * 160: (loud[-1] + 1) * 160] if len(loud) else x


@functools.lru_cache(maxsize=4)
def clips(lang: str) -> tuple[np.ndarray, ...]:
    """Every clip of one language at 16 kHz, trimmed, peak 0.7 (sorted by file name)."""
    from avedge.runtime.audio_io import read_audio

    check_language(lang)
    files = sorted((ROOT / lang).rglob("*.ogg"))
    if not files:
        raise AvedgeError(f"no KLettres recordings for {lang!r} under {ROOT}; "
                          "apt install klettres-data")
    out = []
    for f in files:
        x = trim(read_audio(f, RATE, what="klettres").samples)
        peak = float(np.abs(x).max())
        if peak > 1e-3 and len(x) > RATE // 20:
            out.append((x * (0.7 / peak)).astype(np.float32))
    return tuple(out)


def synthesize(lang: str, rng: np.random.Generator) -> Utterance:
    """4-10 clips of the `lang` speaker, pauses of 30-250 ms between them."""
    pool = clips(lang)
    parts = []
    for _ in range(int(rng.integers(4, 11))):
        parts.append(pool[int(rng.integers(len(pool)))])
        parts.append(np.zeros(int(rng.uniform(*GAP_S) * RATE), np.float32))
    return Utterance(np.concatenate(parts[:-1]), RATE)
