"""Real recorded voices through Debian's festival: diphone/cluster/HTS voices of single people.

Each voice is one recorded person concatenated by the synthesizer (robotic prosody, real
timbre and real recording chain), which is what the synthetic voices lack: the extractor
trained on espeak/Kokoro turned real voices down as if they were interferers (issue #19).
Only the voices we may train on are listed; kal_diphone (festvox-kallpc16k) and
cmu_us_slt_arctic_hts (festvox-us-slt-hts) are the same people as flite's voices and are
reserved for evaluation (models/corpus/real_eval.py), so they are refused here.

What is said hardly matters for whose voice it is: English voices read the corpus's
sentences; the others read pseudo-words built from their own script's syllables (the
Indic voices crash on Latin text), so their letter-to-sound rules run as designed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from avedge.models.corpus.phonemes import Utterance
from avedge.runtime.errors import AvedgeError

# festival voice -> (language script, Debian package)
VOICES = {
    "ked_diphone": ("en", "festvox-kdlpc16k"),
    "czech_dita": ("latin", "festvox-czech-dita"),
    "czech_krb": ("latin", "festvox-czech-krb"),
    "czech_machac": ("latin", "festvox-czech-machac"),
    "czech_ph": ("latin", "festvox-czech-ph"),
    "lp_diphone": ("latin", "festvox-italp16k"),
    "pc_diphone": ("latin", "festvox-itapc16k"),
    "suo_fi_lj_diphone": ("latin", "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": ("latin", "festvox-suopuhe-mv"),
    "upc_ca_ona_hts": ("latin", "festvox-ca-ona-hts"),
    "msu_ru_nsh_clunits": ("cyrillic", "festvox-ru"),
    "hindi_NSK_diphone": ("devanagari", "festvox-hi-nsk"),
    "marathi_NSK_diphone": ("devanagari", "festvox-mr-nsk"),
    "telugu_NSK_diphone": ("telugu", "festvox-te-nsk"),
}
RESERVED = {"kal_diphone": "festvox-kallpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}

_LATIN_C = list("bcdfghjklmnprstvz")
_LATIN_V = list("aeiou")
_CYR_C = list("бвгдзклмнпрстфхчш")
_CYR_V = list("аеиоуя")
# Unicode consonants + dependent vowel signs (empty = the inherent vowel).
_DEVA_C = [chr(c) for c in range(0x0915, 0x0939 + 1) if c not in (0x0929, 0x0931, 0x0934)]
_DEVA_V = [""] + [chr(c) for c in (0x093E, 0x093F, 0x0940, 0x0941, 0x0942, 0x0947, 0x0948,
                                    0x094B, 0x094C)]
_TEL_C = [chr(c) for c in range(0x0C15, 0x0C39 + 1) if c not in (0x0C29, 0x0C34)]
_TEL_V = [""] + [chr(c) for c in (0x0C3E, 0x0C3F, 0x0C40, 0x0C41, 0x0C42, 0x0C46, 0x0C47,
                                   0x0C4A, 0x0C4B)]
SYLLABLES = {"latin": (_LATIN_C, _LATIN_V), "cyrillic": (_CYR_C, _CYR_V),
             "devanagari": (_DEVA_C, _DEVA_V), "telugu": (_TEL_C, _TEL_V)}


def pseudo_sentence(script: str, rng: np.random.Generator) -> str:
    """5-10 words of 1-3 consonant-vowel syllables in `script`."""
    cons, vows = SYLLABLES[script]
    words = []
    for _ in range(int(rng.integers(5, 11))):
        n = int(rng.integers(1, 4))
        words.append("".join(cons[int(rng.integers(len(cons)))] + vows[int(rng.integers(len(vows)))]
                             for _ in range(n)))
    return " ".join(words)


def check_voice(name: str) -> None:
    if name in RESERVED:
        raise AvedgeError(f"festival voice {name!r} ({RESERVED[name]}) is reserved for "
                          "evaluation and never used for training or validation")
    if name not in VOICES:
        raise AvedgeError(f"unknown festival voice {name!r}; available: {', '.join(VOICES)}")


def synthesize(sentence: str, name: str, rng: np.random.Generator) -> Utterance:
    """One utterance of festival voice `name`; `sentence` is read by English voices only.
    Tempo jitter (Duration_Stretch 0.85-1.2) from rng. No phone timings (extraction only)."""
    check_voice(name)
    script, package = VOICES[name]
    if shutil.which("text2wave") is None:
        raise AvedgeError(f"festival is not installed; apt install festival {package}")
    text = sentence if script == "en" else pseudo_sentence(script, rng)
    stretch = float(rng.uniform(0.85, 1.2))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["text2wave", "-eval", f"(voice_{name})", "-eval",
               f"(Parameter.set 'Duration_Stretch {stretch:.3f})", "-o", str(wav)]
        r = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=120,
                           check=False)
        if r.returncode != 0 or not wav.exists():
            raise AvedgeError(f"festival voice {name!r} failed (exit {r.returncode}); is "
                              f"{package} installed? {r.stderr.decode(errors='replace')[-200:]}")
        import soundfile as sf

        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    peak = float(np.abs(audio).max()) or 1.0
    return Utterance(audio * (0.7 / peak), int(rate))
