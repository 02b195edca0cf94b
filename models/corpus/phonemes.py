"""Timing records shared by every synthesizer: what was said, when.

Every voice returns an `Utterance`: float32 mono audio at its native rate, plus phones
and words with start/end in seconds. Times are what the synthesizer itself reports
(espeak events, piper's per-id sample counts, Kokoro's per-token durations), not a
forced alignment after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Phone:
    ph: str  # IPA, stress marks stripped (e.g. "eɪ", "tʃ", "ə")
    start: float  # seconds
    end: float


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Utterance:
    audio: np.ndarray  # (T,) float32 in [-1, 1]
    sample_rate: int
    phones: list[Phone] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    def timings_json(self) -> dict:
        return {
            "phones": [[p.ph, round(p.start, 4), round(p.end, 4)] for p in self.phones],
            "words": [[w.word, round(w.start, 4), round(w.end, 4)] for w in self.words],
        }


STRESS = "ˈˌ"


def clean_phone(s: str) -> str:
    """Drop stress and length marks that some synthesizers glue onto a phone."""
    return "".join(c for c in s if c not in STRESS + "ː").strip()


def words_from_phones(text_words: list[str], groups: list[list[Phone]]) -> list[Word]:
    """Word spans from per-word phone groups (groups align 1:1 with text_words)."""
    out = []
    for w, g in zip(text_words, groups):
        if g:
            out.append(Word(w, g[0].start, g[-1].end))
    return out
