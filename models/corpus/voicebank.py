"""The voice bank: clean utterances with phone/word timings, synthesized once and cached.

Neural synthesis is slow (Kokoro ~2x real time on one core), so everything downstream
(mixtures, lips-pose, renders) draws from this bank instead of synthesizing.

Layout (one file pair per voice, so a bank is usable while it is still being built and
an interrupted build resumes where it stopped):
    <dir>/voices/<voice-slug>.npy   int16 (N,) all utterances of the voice at 16 kHz
    <dir>/voices/<voice-slug>.json  {"voice", "synth", "seed", "utterances": [
                                       {"text", "kind", "offset", "n", "phones", "words"}]}
    <dir>/voices/<voice-slug>.time  synthesis wall seconds of that voice
    <dir>/bank.json                 seed, counts, voices, build seconds per synthesizer

Default location: $AVEDGE_VOICEBANK or ~/.cache/avedge/voicebank (`default_bank_dir()`).
Rebuild: `avedge corpus --build-bank DIR [--seed S]`; same seed, same bytes.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from avedge.models.corpus import GENERATOR_VERSION, text
from avedge.models.corpus.phonemes import Utterance
from avedge.models.corpus.voices import (
    ALL_SYNTHS,
    SYNTHS,
    Voice,
    catalogue,
    speaks_sentence,
    split_of,
)
from avedge.runtime.audio_io import SAMPLE_RATE
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_text

DEFAULT_N_PER_VOICE = {"piper": 200, "kokoro": 8, "espeak": 4, "festival": 60, "klettres": 60}
GRID_FRACTION = 0.5  # half GRID commands (lip reading), half free sentences (extraction)


def default_bank_dir() -> Path:
    return Path(os.environ.get("AVEDGE_VOICEBANK")
                or Path.home() / ".cache" / "avedge" / "voicebank")


def slug(vid: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in vid)


def utt_seed(seed: int, vid: str, i: int) -> list[int]:
    return [seed, zlib.crc32(vid.encode()), i]


def resample(x: np.ndarray, sr: int, to: int = SAMPLE_RATE) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if sr == to:
        return x.astype(np.float32)
    g = gcd(sr, to)
    return resample_poly(x, to // g, sr // g).astype(np.float32)


def synthesize(voice: Voice, sentence: str, rng: np.random.Generator) -> Utterance:
    """One utterance of `voice`; tempo/prosody jitter drawn from rng."""
    if voice.synth == "piper":
        from avedge.models.corpus.voice_piper import synthesize as piper
        return piper(sentence, seed=int(rng.integers(2**31)),
                     length_scale=float(rng.uniform(0.85, 1.15)),
                     noise_scale=float(rng.uniform(0.5, 0.8)), noise_w=float(rng.uniform(0.6, 0.9)))
    if voice.synth == "kokoro":
        from avedge.models.corpus.voice_kokoro import synthesize as kokoro
        a, b, w = voice.params
        return kokoro(sentence, a, b, w, speed=float(rng.uniform(0.9, 1.1)))
    if voice.synth == "festival":
        from avedge.models.corpus.voice_festival import synthesize as festival
        return festival(sentence, voice.params[0], rng)
    if voice.synth == "klettres":
        from avedge.models.corpus.voice_klettres import synthesize as klettres
        return klettres(voice.params[0], rng)
    from avedge.models.corpus.voice_espeak import synthesize as espeak
    name, pitch = voice.params
    return espeak(sentence, name, rate=int(rng.integers(140, 190)),
                  pitch=int(np.clip(pitch + rng.integers(-5, 6), 0, 99)),
                  range_=int(rng.integers(30, 80)))


def warm(synth: str) -> None:
    if synth == "piper":
        from avedge.models.corpus.voice_piper import PiperSynth
        PiperSynth.get()
    elif synth == "kokoro":
        from avedge.models.corpus.voice_kokoro import KokoroSynth
        KokoroSynth.get()


def build_voice(voice: Voice, n: int, seed: int, out_dir: Path) -> float:
    """Synthesize n utterances of one voice into out_dir/voices; returns build seconds."""
    vdir = out_dir / "voices"
    vdir.mkdir(parents=True, exist_ok=True)
    meta_path = vdir / (slug(voice.id) + ".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        timing = meta_path.with_suffix(".time")
        if meta.get("seed") == seed and len(meta["utterances"]) == n and timing.exists():
            return float(timing.read_text())  # already built: resume skips it
    warm(voice.synth)  # model loading is not synthesis time
    t0 = time.perf_counter()
    chunks, utts, offset = [], [], 0
    for i in range(n):
        rng = np.random.default_rng(utt_seed(seed, voice.id, i))
        kind = "grid" if rng.random() < GRID_FRACTION else "free"
        sent = text.sentence(rng, kind)
        u = synthesize(voice, sent, rng)
        if not speaks_sentence(voice):  # KLettres clips, pseudo-words: not the sentence
            sent = ""
        a = resample(u.audio, u.sample_rate)
        pcm = np.clip(np.round(a * 32767), -32767, 32767).astype(np.int16)
        chunks.append(pcm)
        utts.append({"text": sent, "kind": kind, "offset": offset, "n": len(pcm),
                     **u.timings_json()})
        offset += len(pcm)
    secs = time.perf_counter() - t0
    np.save(vdir / (slug(voice.id) + ".npy"), np.concatenate(chunks))
    # Wall time lives beside the json, not in it: the json must be byte-reproducible.
    meta_path.with_suffix(".time").write_text(f"{secs:.3f}")
    # The json last: a voice is in the bank once its json exists.
    atomic_write_text(meta_path, json.dumps({"voice": voice.id, "synth": voice.synth,
                                             "seed": seed, "utterances": utts}))
    return secs


def build_bank(out_dir, voices=None, n_per_voice=None, seed: int = 0, synths=SYNTHS,
               max_voices: dict | None = None, progress=None) -> VoiceBank:
    """Build (or resume) a bank.

    voices: list of voice ids, or None for the catalogue of `synths` (optionally capped
    per synthesizer by max_voices={"espeak": 60}, taking an even spread of the list).
    n_per_voice: int, or {synth: int}; default DEFAULT_N_PER_VOICE.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if voices is None:
        vs = catalogue(synths)
        if max_voices:
            keep = []
            for s in ALL_SYNTHS:
                group = [v for v in vs if v.synth == s]
                cap = max_voices.get(s, len(group))
                if cap < len(group):
                    idx = np.linspace(0, len(group) - 1, cap).round().astype(int)
                    group = [group[i] for i in idx]
                keep += group
            vs = keep
    else:
        vs = [Voice.parse(v) for v in voices]
    counts = dict(DEFAULT_N_PER_VOICE)
    if isinstance(n_per_voice, int):
        counts = {s: n_per_voice for s in ALL_SYNTHS}
    elif n_per_voice:
        counts.update(n_per_voice)
    per_synth: dict[str, dict] = {}
    for k, v in enumerate(vs):
        secs = build_voice(v, counts[v.synth], seed, out)
        d = per_synth.setdefault(v.synth, {"voices": 0, "utterances": 0, "build_seconds": 0.0})
        d["voices"] += 1
        d["utterances"] += counts[v.synth]
        d["build_seconds"] = round(d["build_seconds"] + secs, 3)
        if progress:
            progress(f"[{k + 1}/{len(vs)}] {v.id}: {secs:.1f} s")
    bank = open_bank(out)
    for s, d in per_synth.items():
        d["audio_seconds"] = round(sum(u.n for u in bank.utts if u.synth == s) / SAMPLE_RATE, 1)
        d["realtime_factor"] = round(d["audio_seconds"] / max(d["build_seconds"], 1e-9), 1)
    (out / "bank.json").write_text(json.dumps({
        "generator_version": GENERATOR_VERSION, "seed": seed, "sample_rate": SAMPLE_RATE,
        "n_per_voice": counts, "synths": per_synth, "voices": [v.id for v in vs]}, indent=1))
    return bank


@dataclass
class BankUtt:
    voice: str
    synth: str
    index: int  # within the voice
    text: str
    kind: str
    offset: int
    n: int
    phones: list  # [[ph, start_s, end_s], ...]
    words: list  # [[word, start_s, end_s], ...]


class VoiceBank:
    """Read side of a bank. Audio arrays are memory-mapped, so opening is cheap."""

    def __init__(self, root: Path):
        self.root = Path(root)
        vdir = self.root / "voices"
        if not vdir.is_dir():
            raise AvedgeError(f"no voice bank at {self.root} (no voices/ folder); build one "
                              "with `avedge corpus --build-bank DIR`")
        self.utts: list[BankUtt] = []
        self.by_voice: dict[str, list[BankUtt]] = {}
        self._audio: dict[str, np.ndarray] = {}
        self._slug: dict[str, str] = {}
        for meta_path in sorted(vdir.glob("*.json")):
            meta = json.loads(meta_path.read_text())
            vid = meta["voice"]
            self._slug[vid] = meta_path.stem
            lst = [BankUtt(vid, meta["synth"], i, u["text"], u["kind"], u["offset"], u["n"],
                           u["phones"], u["words"]) for i, u in enumerate(meta["utterances"])]
            self.by_voice[vid] = lst
            self.utts += lst
        if not self.utts:
            raise AvedgeError(f"voice bank at {self.root} is empty (still building?)")
        self.sample_rate = SAMPLE_RATE

    def __getstate__(self) -> dict:
        # Pickled for training workers: the memory maps would be copied in whole; each
        # process maps the files again on first use instead.
        return {**self.__dict__, "_audio": {}}

    @property
    def voices(self) -> list[str]:
        return sorted(self.by_voice)

    def voices_in(self, split: str, holdout_synth: str | None = None,
                  timed: bool = False) -> list[str]:
        """The split's voices; timed=True: only those with phone timings (what lip
        reading and lips-pose need; the real recorded people have none)."""
        return [v for v in self.voices if split_of(v, holdout_synth) == split
                and (not timed or any(u.phones for u in self.by_voice[v]))]

    def audio(self, u: BankUtt) -> np.ndarray:
        """(n,) float32 at 16 kHz."""
        arr = self._audio.get(u.voice)
        if arr is None:
            arr = np.load(self.root / "voices" / (self._slug[u.voice] + ".npy"), mmap_mode="r")
            self._audio[u.voice] = arr
        return arr[u.offset: u.offset + u.n].astype(np.float32) * (1.0 / 32767)

    def info(self) -> dict:
        p = self.root / "bank.json"
        return json.loads(p.read_text()) if p.exists() else {}


def open_bank(bank_dir=None) -> VoiceBank:
    return VoiceBank(Path(bank_dir) if bank_dir else default_bank_dir())
