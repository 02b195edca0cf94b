"""The catalogue of voices and their split assignment.

A voice id names a synthesizer and the parameters that make one talker:
    piper:joe                     piper's single English voice
    kokoro:<a>+<b>@<w>            Kokoro style vector (1-w)*a + w*b (w=0: pure a)
    espeak:<accent>+<variant>@<pitch>  espeak-ng accent, variant file, base pitch (0..99)
    festival:<voice>              a real recorded person through a festival voice
    klettres:<lang>               KLettres' real recordings of one native speaker

The real voices (REAL_SYNTHS) are not in the default catalogue: they need Debian packages
(festival voices, klettres-data) that the synthetic corpus does not. Their split is fixed
by name (REAL_VAL) rather than hashed: there are only ~28 of them, and validation must
hold a few real people out. They have no "test" voices: the test of real speech is the
reserved recordings of models/corpus/real_eval.py, never trained or validated on.

Splits are disjoint in voice. Assignment is a stable hash of the voice id (not of the
seed), so train/val/test never trade voices between runs or bank builds. Holding out a
synthesizer moves all of its voices to "test" and keeps them out of train and val.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import combinations

from avedge.models.corpus import voice_espeak, voice_festival, voice_klettres
from avedge.models.corpus.voice_kokoro import STYLES
from avedge.runtime.errors import AvedgeError

SYNTHS = ("piper", "kokoro", "espeak")
REAL_SYNTHS = ("festival", "klettres")
ALL_SYNTHS = SYNTHS + REAL_SYNTHS
# Real people held out for validation: a child, an Italian man, a Finnish man, and three
# KLettres speakers (Dutch, Hungarian, Arabic).
REAL_VAL = frozenset({"festival:czech_krb", "festival:pc_diphone", "festival:hy_fi_mv_diphone",
                      "klettres:nl", "klettres:hu", "klettres:ar"})
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
KOKORO_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
ESPEAK_PITCHES = (35, 55, 75)


@dataclass(frozen=True)
class Voice:
    id: str
    synth: str
    params: tuple  # synth-specific, see module docstring

    @staticmethod
    def parse(vid: str) -> Voice:
        synth, _, rest = vid.partition(":")
        try:
            if synth == "piper":
                return Voice(vid, synth, (rest,))
            if synth == "kokoro":
                ab, _, w = rest.partition("@")
                a, _, b = ab.partition("+")
                if a not in STYLES or (b and b not in STYLES):
                    raise ValueError(f"styles are {', '.join(STYLES)}")
                return Voice(vid, synth, (a, b or a, float(w or 0)))
            if synth == "espeak":
                name, _, pitch = rest.partition("@")
                return Voice(vid, synth, (name, int(pitch or 50)))
            if synth == "festival":
                voice_festival.check_voice(rest)
                return Voice(vid, synth, (rest,))
            if synth == "klettres":
                voice_klettres.check_language(rest)
                return Voice(vid, synth, (rest,))
        except ValueError as exc:
            raise AvedgeError(f"bad voice id {vid!r}: {exc}") from exc
        raise AvedgeError(f"bad voice id {vid!r}; synthesizers: {', '.join(ALL_SYNTHS)}")


def catalogue(synths=SYNTHS) -> list[Voice]:
    """Every voice the bank can build, fastest synthesizer first (a bank is usable
    while it builds)."""
    out = []
    if "piper" in synths:
        out.append(Voice.parse("piper:joe"))
    if "espeak" in synths:
        for acc in voice_espeak.ACCENTS:
            for var in voice_espeak.VARIANTS:
                for p in ESPEAK_PITCHES:
                    out.append(Voice.parse(f"espeak:{acc}+{var}@{p}"))
    if "kokoro" in synths:
        out += [Voice.parse(f"kokoro:{a}+{a}@0") for a in STYLES]
        for a, b in combinations(STYLES, 2):
            out += [Voice.parse(f"kokoro:{a}+{b}@{w}") for w in KOKORO_WEIGHTS[1:]]
    if "festival" in synths:
        out += [Voice.parse(f"festival:{v}") for v in voice_festival.VOICES]
    if "klettres" in synths:
        out += [Voice.parse(f"klettres:{lang}") for lang in voice_klettres.LANGUAGES]
    return out


def speaks_sentence(voice: Voice) -> bool:
    """Whether the voice reads the corpus sentence it is given (KLettres chains letters;
    non-English festival voices read pseudo-words in their own script)."""
    if voice.synth == "klettres":
        return False
    return voice.synth != "festival" or voice_festival.VOICES[voice.params[0]][0] == "en"


def _unit(vid: str) -> float:
    return int.from_bytes(hashlib.sha256(vid.encode()).digest()[:8], "big") / 2.0 ** 64


def split_of(vid: str, holdout_synth: str | None = None) -> str:
    """Stable split of a voice. A lone piper voice goes to train unless held out."""
    synth = vid.partition(":")[0]
    if holdout_synth is not None:
        if holdout_synth not in ALL_SYNTHS:
            raise AvedgeError(f"unknown synthesizer {holdout_synth!r}; available: "
                              f"{', '.join(ALL_SYNTHS)}")
        if synth == holdout_synth:
            return "test"
    if synth == "piper":
        return "train"
    if synth in REAL_SYNTHS:
        return "val" if vid in REAL_VAL else "train"
    u = _unit(vid)
    split = "train" if u < SPLIT_FRACTIONS[0] else "val" if u < sum(SPLIT_FRACTIONS[:2]) \
        else "test"
    if holdout_synth is not None and split == "test":
        return "val"  # the held-out synthesizer is the whole test set
    return split


def small_bank_voices(per_split: dict | None = None, synth: str = "espeak") -> list[str]:
    """A few voices of `synth` spread so each split has enough to form mixtures (target +
    interferer + babble), fastest first: for demos and test fixtures, not training."""
    per_split = per_split or {"train": 3, "val": 2, "test": 2}
    chosen, count = [], dict.fromkeys(per_split, 0)
    for v in catalogue((synth,)):
        s = split_of(v.id)
        if count.get(s, 0) < per_split.get(s, 0):
            chosen.append(v.id)
            count[s] += 1
        if count == per_split:
            break
    return chosen
