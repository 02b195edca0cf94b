"""Real recorded human speech RESERVED FOR EVALUATION (issue #19): never train or validate
on it. Mixtures in the shape MixtureSampler gives, so every figure of the speech extractor
can be reported on real voices.

    >>> from avedge.models.corpus.real_eval import real_mixtures, speakers  # doctest: +SKIP
    >>> exs = real_mixtures(n=16, seed=0)                  # talker at 0 dB + noise at 5 dB
    >>> exs = real_mixtures(n=16, seed=0, noise_only=True)  # same targets and noise, no talker
    >>> exs[0]["mixture"], exs[0]["target"], exs[0]["enrollment"]   # float32 at 16 kHz

Speakers (one id per person; the Debian packages in parentheses):
  - pocketsphinx-testdata: its test recordings, grouped by who speaks them:
    "pocketsphinx-cards" (cards/001-005, one session), "pocketsphinx-librivox" (one
    LibriVox reader), "pocketsphinx-dhd" (goforward, numbers, something and
    tidigits/dhd.2934z: the CMU developer's test files; the extractor's speaker encoder
    puts these four together, cosine 0.5-0.86, and apart from cards and librivox).
  - flite's recorded voices awb, rms, slt, kal (kal16 = kal at 16 kHz; awb_time is awb),
    and festival's kal_diphone (festvox-kallpc16k) and cmu_us_slt_arctic_hts
    (festvox-us-slt-hts): the same two people as flite's kal and slt, so the same ids.
    Sentences from models/corpus/text.py.
  - klettres-data: one native speaker per language for en, en_GB, de, fr, es, it; their
    letter and syllable clips (silence trimmed) chained with short gaps into 2-4 s
    utterance-like clips, each clip used once, so two clips of a speaker never share a
    recording.

Decoding and synthesis run once into a cache (~/.cache/avedge/real_eval or `cache_dir`),
rebuilt when missing; everything is 16 kHz float32 and deterministic (BUILD_SEED).

A mixture (`real_mixtures`): the target speaker goes round-robin over the three families
(pocketsphinx, flite/festival, KLettres; order shuffled by the seed) so a few mixtures
already span speakers and languages; then, from a generator seeded by (seed, i): the
target's recordings fill ~3/4 of the window, one interfering talker (a DIFFERENT person)
fills the window at `sir_db`, noise (white/pink/brown, or babble of 4-6 other reserved
talkers) at `snr_db`, and a noisy enrollment (5-20 dB SNR, <= enroll_seconds) from the
target speaker's OTHER recordings. `noise_only=True` draws the very same mixtures and
leaves the interferer out, so the two conditions compare mixture by mixture.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from avedge.models.corpus import augment as A
from avedge.models.corpus import text
from avedge.models.corpus.mixtures import place
from avedge.runtime.audio_io import SAMPLE_RATE, read_audio, resample
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_path, build_lock

POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
KLETTRES_DIR = Path("/usr/share/klettres")
FESTIVAL_VOICE_DIRS = {"kal": Path("/usr/share/festival/voices/english/kal_diphone"),
                       "slt": Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")}
FESTIVAL_VOICE_NAMES = {"kal": "kal_diphone", "slt": "cmu_us_slt_arctic_hts"}
FESTIVAL_PACKAGES = {"kal": "festvox-kallpc16k", "slt": "festvox-us-slt-hts"}
FLITE, TEXT2WAVE = "flite", "text2wave"  # executables (module attributes: tests patch them)

POCKETSPHINX_SPEAKERS = {
    "pocketsphinx-cards": [f"cards/00{i}.wav" for i in range(1, 6)],
    "pocketsphinx-librivox": [f"librivox/sense_and_sensibility_01_austen_64kb-0{k}.wav"
                              for k in (870, 880, 890, 920, 930)],
    "pocketsphinx-dhd": ["goforward.raw", "numbers.raw", "something.raw",
                         "tidigits/dhd.2934z.raw"],
}
FLITE_VOICES = {"awb": "awb", "rms": "rms", "slt": "slt", "kal": "kal16"}  # person -> voice
KLETTRES_LANGS = ("en", "en_GB", "de", "fr", "es", "it")
FAMILIES = ("pocketsphinx", "cmu", "klettres")

BUILD_SEED = 19  # sentences and KLettres chaining; part of the cache's name
CACHE_VERSION = 1
N_FLITE, N_FESTIVAL = 6, 3  # sentences per voice
KLETTRES_SECONDS = (2.0, 4.0)  # length of a chained clip
GAP_SECONDS = (0.08, 0.25)  # silence between chained clips / recordings
LEVEL_DBFS = (-33.0, -18.0)  # target RMS in the mixture (as mixtures.LEVEL_DBFS)
PEAK = 0.95  # mixture peak after scaling (as mixtures.PEAK: no clipping)
ENROLL_SNR_DB = (5.0, 20.0)
ENROLL_DBFS = -25.0
TARGET_FILL = 0.75  # the target's recordings fill at least this share of the window...
MIN_ENROLL_LEFT = 2.0  # ...while leaving at least this many seconds for the enrollment


@dataclass(frozen=True)
class Recording:
    speaker: str  # the person, e.g. "slt" (flite and festival alike), "klettres-de"
    source: str  # "pocketsphinx" | "flite" | "festival" | "klettres"
    name: str  # unique, e.g. "flite/slt/02", "klettres/de/05", "pocketsphinx/cards/001.wav"
    language: str
    text: str  # what is said where known ("" otherwise)
    audio: np.ndarray  # (T,) float32 at 16 kHz

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def family(speaker: str) -> str:
    if speaker.startswith("pocketsphinx-"):
        return "pocketsphinx"
    return "klettres" if speaker.startswith("klettres-") else "cmu"


def language(speaker: str) -> str:
    return speaker.split("-", 1)[1] if family(speaker) == "klettres" else "en"


# ------------------------------------------------------------------------ availability

def missing_packages() -> list[str]:
    """The Debian packages whose files this module needs and does not find."""
    missing = []
    if not all((POCKETSPHINX_DIR / f).is_file() for fs in POCKETSPHINX_SPEAKERS.values()
               for f in fs):
        missing.append("pocketsphinx-testdata")
    if shutil.which(FLITE) is None:
        missing.append("flite")
    if shutil.which(TEXT2WAVE) is None:
        missing.append("festival")
    missing += [FESTIVAL_PACKAGES[p] for p, d in FESTIVAL_VOICE_DIRS.items() if not d.is_dir()]
    if not all((KLETTRES_DIR / lang).is_dir() for lang in KLETTRES_LANGS):
        missing.append("klettres-data")
    return missing


def _require_packages() -> None:
    missing = missing_packages()
    if missing:
        raise AvedgeError("the reserved real-voice evaluation set needs the Debian packages "
                          f"{' '.join(missing)}; install them with `sudo apt-get install "
                          f"{' '.join(missing)}` (or `make setup`)")


# ---------------------------------------------------------------------------- building

def _read_raw(path: Path) -> np.ndarray:
    """pocketsphinx's .raw files: headerless 16 kHz 16-bit little-endian mono."""
    return (np.fromfile(path, "<i2").astype(np.float32) / 32768.0)


def _read_wav_bytes(data: bytes, what: str) -> np.ndarray:
    import soundfile as sf

    try:
        x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AvedgeError(f"{what} gave no readable audio ({exc})") from exc
    return resample(x.mean(axis=1), rate, SAMPLE_RATE)


def _run_synth(cmd: list[str], sentence: str, what: str) -> np.ndarray:
    """Run a synthesizer that writes a WAV to the path in `cmd` ("{out}")."""
    with tempfile.TemporaryDirectory(prefix="avedge-real-eval-") as tmp:
        out = Path(tmp) / "out.wav"
        argv = [a.replace("{out}", str(out)) for a in cmd]
        r = subprocess.run(argv, input=sentence, capture_output=True, text=True, timeout=120,
                           check=False)  # its stderr goes into our message
        if r.returncode != 0 or not out.is_file():
            raise AvedgeError(f"{what} failed ({r.stderr.strip()[-200:] or r.returncode})")
        return _read_wav_bytes(out.read_bytes(), what)


def _flite(voice: str, sentence: str) -> np.ndarray:
    return _run_synth([FLITE, "-voice", voice, "-t", sentence, "-o", "{out}"], "",
                      f"flite -voice {voice}")


def _festival(voice: str, sentence: str) -> np.ndarray:
    return _run_synth([TEXT2WAVE, "-eval", f"(voice_{voice})", "-o", "{out}"], sentence,
                      f"text2wave ({voice})")


def _trim(x: np.ndarray, floor_db: float = 35.0, margin_s: float = 0.03) -> np.ndarray:
    """Cut leading/trailing silence: 10 ms frames more than floor_db below the loudest."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(e > e.max() - floor_db)
    m = int(margin_s * SAMPLE_RATE)
    return x[max(0, on[0] * hop - m): min(len(x), (on[-1] + 1) * hop + m)]


def _chain(clips: list[np.ndarray], rng: np.random.Generator, with_starts: bool = False):
    """Clips one after another with short silent gaps (-> and where each starts)."""
    parts, starts, at = [], [], 0
    for k, c in enumerate(clips):
        if k:
            gap = int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
            parts.append(np.zeros(gap, np.float32))
            at += gap
        parts.append(c)
        starts.append(at)
        at += len(c)
    x = np.concatenate(parts).astype(np.float32)
    return (x, starts) if with_starts else x


def _klettres(lang: str, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One language's clips, trimmed, shuffled, chained into 2-4 s clips (each once)."""
    files = sorted((KLETTRES_DIR / lang).glob("*/*.ogg"))
    clips = [_trim(read_audio(f, what="KLettres recording").samples) for f in files]
    order = rng.permutation(len(clips))
    out, cur, want = [], [], rng.uniform(*KLETTRES_SECONDS)
    for j in order:
        if cur and (sum(map(len, cur)) + len(clips[j])) / SAMPLE_RATE > KLETTRES_SECONDS[1] \
                - len(cur) * GAP_SECONDS[1]:  # this clip would make it too long: close it
            out.append(_chain(cur, rng))
            cur, want = [], rng.uniform(*KLETTRES_SECONDS)
        cur.append(clips[j])
        if sum(map(len, cur)) / SAMPLE_RATE >= want:
            out.append(_chain(cur, rng))
            cur, want = [], rng.uniform(*KLETTRES_SECONDS)
    if cur and sum(map(len, cur)) / SAMPLE_RATE >= KLETTRES_SECONDS[0] / 2:
        out.append(_chain(cur, rng))
    return [(f"klettres/{lang}/{k:02d}", x) for k, x in enumerate(out)]


def _build() -> list[Recording]:
    _require_packages()
    recs = []
    for spk, files in POCKETSPHINX_SPEAKERS.items():
        for f in files:
            p = POCKETSPHINX_DIR / f
            x = _read_raw(p) if p.suffix == ".raw" else read_audio(p).samples
            recs.append(Recording(spk, "pocketsphinx", f"pocketsphinx/{f}", "en", "", x))
    for k, (spk, voice) in enumerate(FLITE_VOICES.items()):
        rng = np.random.default_rng([BUILD_SEED, 1, k])
        for j in range(N_FLITE):
            s = text.free_sentence(rng)
            recs.append(Recording(spk, "flite", f"flite/{spk}/{j:02d}", "en", s,
                                  _flite(voice, s)))
    for k, spk in enumerate(FESTIVAL_VOICE_DIRS):
        rng = np.random.default_rng([BUILD_SEED, 2, k])
        for j in range(N_FESTIVAL):
            s = text.free_sentence(rng)
            recs.append(Recording(spk, "festival", f"festival/{spk}/{j:02d}", "en", s,
                                  _festival(FESTIVAL_VOICE_NAMES[spk], s)))
    for k, lang in enumerate(KLETTRES_LANGS):
        for name, x in _klettres(lang, np.random.default_rng([BUILD_SEED, 3, k])):
            recs.append(Recording(f"klettres-{lang}", "klettres", name, lang, "", x))
    return recs


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avedge" / "real_eval"


def cache_file(cache_dir=None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"real_eval-v{CACHE_VERSION}-s{BUILD_SEED}.npz"


def _save(recs: list[Recording], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    index = [{"speaker": r.speaker, "source": r.source, "name": r.name,
              "language": r.language, "text": r.text} for r in recs]
    with atomic_path(path) as tmp:  # whole or absent: a killed build is rebuilt next time
        np.savez(tmp, index=np.array(json.dumps(index)),
                 **{f"a{k}": r.audio.astype(np.float32) for k, r in enumerate(recs)})


def _load(path: Path) -> list[Recording]:
    with np.load(path) as z:
        index = json.loads(str(z["index"]))
        return [Recording(audio=z[f"a{k}"], **meta) for k, meta in enumerate(index)]


@functools.lru_cache(maxsize=2)
def _recordings(path: Path) -> tuple[Recording, ...]:
    with build_lock(path):  # a second process waits for the first one's build
        if not path.is_file():
            _save(_build(), path)
    try:
        return tuple(_load(path))
    except (OSError, ValueError, KeyError) as exc:
        raise AvedgeError(f"the real-voice cache {path} is unreadable ({exc}); delete it and "
                          "it is rebuilt") from exc


def speakers(cache_dir=None) -> dict[str, list[Recording]]:
    """The reserved speakers -> their recordings (speaker ids sorted; >= 2 recordings each).
    Builds the cache on first use (~1 min); a missing Debian package -> AvedgeError."""
    out: dict[str, list[Recording]] = {}
    for r in _recordings(cache_file(cache_dir)):
        out.setdefault(r.speaker, []).append(r)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------- mixtures

def _take(recs: list[Recording], want_s: float, keep_s: float) -> int:
    """How many of `recs` (in order) to chain for >= want_s seconds, leaving at least
    keep_s seconds in the rest; always >= 1."""
    total, rest, k = 0.0, sum(r.seconds for r in recs), 0
    while k < len(recs) and (k == 0 or (total < want_s and rest - recs[k].seconds >= keep_s)):
        total += recs[k].seconds
        rest -= recs[k].seconds
        k += 1
    return k


def _shuffled(recs: list[Recording], rng) -> list[Recording]:
    return [recs[j] for j in rng.permutation(len(recs))]


def _target_order(spk: dict[str, list[Recording]], seed: int) -> list[str]:
    """Speakers round-robin over the families, each family's order shuffled by the seed:
    the first few mixtures already cover every family (and so several languages)."""
    rng = np.random.default_rng([seed, 19])
    groups = [[s for s in spk if family(s) == f] for f in FAMILIES]
    groups = [[g[j] for j in rng.permutation(len(g))] for g in groups if g]
    return [g[k] for k in range(max(map(len, groups))) for g in groups if k < len(g)]


def _range(v, what: str) -> tuple[float, float]:
    lo, hi = (float(v[0]), float(v[1])) if np.ndim(v) else (float(v), float(v))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise AvedgeError(f"{what} must be a finite number or a (low, high) range; got {v!r}")
    return lo, hi


def _enrollment(recs: list[Recording], n: int, rng) -> tuple[np.ndarray, list[str]]:
    """Recordings chained until n samples (or all of them), a random n-sample crop, noise
    at 5-20 dB SNR. -> (clip, names of the recordings the crop holds)."""
    k = 1
    while k < len(recs) and sum(len(r.audio) for r in recs[:k]) < n:
        k += 1
    x, starts = _chain([r.audio for r in recs[:k]], rng, with_starts=True)
    s = int(rng.integers(len(x) - n + 1)) if len(x) > n else 0
    x = x[s: s + n]
    names = [r.name for r, a in zip(recs[:k], starts)  # those with >= 0.5 s in the crop
             if min(a + len(r.audio), s + len(x)) - max(a, s) >= SAMPLE_RATE // 2]
    noise = A.colored_noise(len(x), ("white", "pink", "brown")[int(rng.integers(3))], rng)
    x = x + A.scale_to_ratio(x, noise, float(rng.uniform(*ENROLL_SNR_DB)))
    x = x * (10 ** (ENROLL_DBFS / 20) / A.rms(x))
    return (x * min(1.0, PEAK / (np.abs(x).max() + A.EPS))).astype(np.float32), names


def _babble(spk, exclude: set[str], n: int, rng) -> np.ndarray:
    """4-6 recordings of reserved talkers outside `exclude`, each at unit RMS."""
    others = [s for s in spk if s not in exclude]
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(4, 7))):
        recs = spk[others[int(rng.integers(len(others)))]]
        x, _ = place(recs[int(rng.integers(len(recs)))].audio, n, rng)
        out += x / A.rms(x)
    return out / A.rms(out)


def mixture_at(spk: dict[str, list[Recording]], order: list[str], i: int, seed: int,
               sir_db=(0.0, 0.0), snr_db=(5.0, 5.0), noise_only: bool = False,
               enroll_seconds: float = 5.0, seconds: float = 4.0,
               noise_types=A.NOISE_TYPES) -> dict:
    """Mixture i: a pure function of (speakers, seed, i); noise_only changes nothing but
    the interferer's presence."""
    rng = np.random.default_rng([seed, i])
    n = round(seconds * SAMPLE_RATE)
    voice = order[i % len(order)]
    recs = _shuffled(spk[voice], rng)
    k = _take(recs, TARGET_FILL * seconds, min(MIN_ENROLL_LEFT, enroll_seconds))
    target, off = place(_chain([r.audio for r in recs[:k]], rng), n, rng)
    # One interfering talker: another person, his/her recordings filling the window.
    others = [s for s in spk if s != voice]
    iv = others[int(rng.integers(len(others)))]
    irecs = _shuffled(spk[iv], rng)
    ik = _take(irecs, seconds, 0.0)
    interf, _ = place(_chain([r.audio for r in irecs[:ik]], rng), n, rng)
    sir = float(rng.uniform(*sir_db))
    snr = float(rng.uniform(*snr_db))
    ntype = noise_types[int(rng.integers(len(noise_types)))]
    noise = (_babble(spk, {voice, iv}, n, rng) if ntype == "babble"
             else A.colored_noise(n, ntype, rng))
    target = target * (10 ** (float(rng.uniform(*LEVEL_DBFS)) / 20) / A.rms(target))
    mixture = target + A.scale_to_ratio(target, noise, snr)
    if not noise_only:
        mixture = mixture + A.scale_to_ratio(target, interf, sir)
    g = min(1.0, PEAK / (np.abs(mixture).max() + A.EPS))  # one gain keeps SIR and SNR
    enroll, enroll_names = _enrollment(recs[k:], round(enroll_seconds * SAMPLE_RATE), rng)
    return {
        "mixture": (mixture * g).astype(np.float32),  # (T,)
        "target": (target * g).astype(np.float32),  # (T,) the clean recording(s)
        "enrollment": enroll,  # (E,) E <= enroll_seconds * 16000, other recordings
        "voice": voice, "synth": recs[0].source, "text": " / ".join(r.text for r in recs[:k]),
        "utt_index": i, "target_offset": off, "speed": 1.0, "voice_shift": 0.0,
        "interferers": [] if noise_only else [iv],
        "sir_db": None if noise_only else sir, "snr_db": snr, "noise": ntype,
        "sample_rate": SAMPLE_RATE,
        # provenance beyond MixtureSampler's keys
        "language": language(voice), "family": family(voice),
        "target_recordings": [r.name for r in recs[:k]],
        "enrollment_recordings": enroll_names,
        "interferer_recordings": [] if noise_only else [r.name for r in irecs[:ik]],
    }


def real_mixtures(n: int = 16, seed: int = 0, sir_db=0.0, snr_db=5.0,
                  noise_only: bool = False, enroll_seconds: float = 5.0,
                  seconds: float = 4.0, cache_dir=None,
                  noise_types=A.NOISE_TYPES) -> list[dict]:
    """`n` mixtures of reserved real speakers (module docstring), deterministic given the
    seed; mixture i does not depend on n. sir_db/snr_db: a value or a (low, high) range.
    -> dicts with MixtureSampler's keys (sir_db None when noise_only) plus "language",
    "family", "target_recordings", "enrollment_recordings", "interferer_recordings"."""
    if n < 1:
        raise AvedgeError(f"n must be >= 1; got {n}")
    if not 1.0 <= enroll_seconds <= 20.0:
        raise AvedgeError(f"enroll_seconds must be in 1..20; got {enroll_seconds}")
    if not 0.5 <= seconds <= 60.0:
        raise AvedgeError(f"seconds must be in 0.5..60; got {seconds}")
    bad = set(noise_types) - set(A.NOISE_TYPES)
    if bad or not noise_types:
        raise AvedgeError(f"noise_types must be among {', '.join(A.NOISE_TYPES)}; got "
                          f"{list(noise_types)}")
    spk = speakers(cache_dir)
    order = _target_order(spk, seed)
    kw = {"sir_db": _range(sir_db, "sir_db"), "snr_db": _range(snr_db, "snr_db"),
          "noise_only": noise_only, "enroll_seconds": enroll_seconds, "seconds": seconds,
          "noise_types": tuple(noise_types)}
    return [mixture_at(spk, order, i, seed, **kw) for i in range(n)]
