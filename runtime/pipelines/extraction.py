"""Target speech extraction at run time: enroll once, then stream 8 ms chunks.

    >>> from avedge.runtime.pipelines.extraction import Extraction
    >>> ex = Extraction.from_artifact("artifacts/speech-extractor-hearable")  # doctest: +SKIP
    >>> emb = ex.enroll(enrollment_16k)          # (1, E), once per enrolled talker
    >>> stream = ex.stream(emb)                  # a runtime Stream, state inside it
    >>> for block in blocks:                     # any block length
    ...     stream.accept(block)
    ...     out = stream.read()                  # output of every complete chunk
    >>> tail = stream.finish()                   # total output == total input, aligned

`process()` runs a whole file through the same Stream; `DuplexProcessor` is the
fixed-block callback that `avedge listen` hands to the sound card (and that tests drive
from a file). Numpy only: the artifact's sessions do the arithmetic.

Input handling (documented in `avedge extract --help` too):
  - enrollment shorter than MIN_ENROLL_SECONDS, silent, or non-finite: `InputError`;
  - enrollment longer than ENROLL_SECONDS: its loudest ENROLL_SECONDS window is used;
    shorter: it is looped to ENROLL_SECONDS (what training does);
  - silent mixture: processed (the output is silent too);
  - non-finite mixture samples: refused by the Stream (`InputError`).

Ambient (`ambient_db`): the untouched input mixed back under the extracted voice, at the
same samples (the Stream's output is aligned with its input). A hearable keeps some of
the room for awareness, and it bounds the harm when the model turns the target down:
the level was chosen on the real-voice validation speakers (never on the reserved test
voices): -26 dB gave the best mean over their talker and noise-only mixtures and lifted
the worst mixture by ~1 dB (benchmarks/RESULTS.md). None/off: the output alone.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from avedge.runtime.audio_io import SAMPLE_RATE
from avedge.runtime.errors import ArtifactError, InputError
from avedge.runtime.stream import TIMINGS_KEPT

ENROLL_SECONDS = 5.0
# What `avedge extract` and `avedge listen` mix back (see the module docstring); the
# Extraction class itself defaults to off, so benchmarks and evaluation measure the model.
DEFAULT_AMBIENT_DB = -26.0
MIN_ENROLL_SECONDS = 1.0
SILENCE_RMS = 10 ** (-70 / 20)  # below -70 dBFS RMS an enrollment counts as silent
COMPONENTS = ("speaker_encoder", "extractor")


def fit_enrollment(wav: np.ndarray, n: int) -> np.ndarray:
    """(L,) -> (n,): loop a short clip, or keep the loudest n-sample window (hop 250 ms).
    Mirrors avedge.models.speech_extractor.speaker_encoder.fit_enrollment (tested to agree)."""
    length = len(wav)
    if length == n:
        return wav
    if length > n:
        hop = SAMPLE_RATE // 4
        energy = np.concatenate([[0.0], np.cumsum(wav.astype(np.float64) ** 2)])
        starts = np.arange(0, length - n + 1, hop)
        best = int(starts[np.argmax(energy[starts + n] - energy[starts])])
        return wav[best: best + n]
    return np.tile(wav, -(-n // length))[:n]


@dataclass
class ExtractionResult:
    samples: np.ndarray  # (T,) float32, aligned with the input
    chunk_ms: list[float] = field(default_factory=list)  # compute time of every chunk
    wall_s: float = 0.0

    @property
    def chunks(self) -> int:
        return len(self.chunk_ms)

    def stats(self, sample_rate: int = SAMPLE_RATE) -> dict:
        ms = np.asarray(self.chunk_ms) if self.chunk_ms else np.zeros(1)
        audio_s = len(self.samples) / sample_rate
        return {"chunks": self.chunks,
                "compute_ms_median": round(float(np.median(ms)), 4),
                "compute_ms_p90": round(float(np.percentile(ms, 90)), 4),
                "rtf": round(float(ms.sum() / 1e3 / max(audio_s, 1e-9)), 4)}


def check_ambient_db(value) -> float | None:
    """None/"off" -> None; a level in dB (below 0) -> that level."""
    if value is None or (isinstance(value, str) and value.lower() == "off"):
        return None
    try:
        db = float(value)
    except (TypeError, ValueError):
        raise InputError(f"ambient level {value!r} is not a number; give a level in dB "
                         "below 0 (e.g. -20) or 'off'") from None
    if not np.isfinite(db) or db >= 0:
        raise InputError(f"ambient level {value!r} dB: give a level below 0 dB (e.g. -20; "
                         "0 would be the input as loud as the voice) or 'off'")
    return db


class AmbientStream:
    """A runtime Stream whose output gets `gain` x the input at the same samples. Input a
    Stream refuses never enters the mix; reset/finish/timings behave as the Stream's."""

    def __init__(self, stream, gain: float):
        self._stream, self.gain = stream, np.float32(gain)
        self._pending = np.zeros(0, np.float32)

    def __getattr__(self, name):  # chunk_ms, chunks_run, spec, ...: the Stream's
        return getattr(self._stream, name)

    def accept(self, samples) -> None:
        self._stream.accept(samples)  # raises, unchanged, on a bad block
        x = np.asarray(samples, np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, x])

    def ready(self) -> bool:
        return self._stream.ready()

    def _mix(self, y: np.ndarray) -> np.ndarray:
        n = y.shape[-1]
        out = y + self.gain * self._pending[:n].reshape(y.shape)
        self._pending = self._pending[n:]
        return out

    def read(self) -> np.ndarray:
        return self._mix(self._stream.read())

    def finish(self) -> np.ndarray:
        return self._mix(self._stream.finish())

    def reset(self) -> None:
        self._stream.reset()
        self._pending = np.zeros(0, np.float32)


class Extraction:
    """Speaker encoder + streaming extractor. Takes any Session-like objects: `.spec` (the
    typed manifest) and `.run(**x)` for the encoder, `.spec` and `.stream(conditions=...)`
    for the extractor. `ambient_db`: see the module docstring (None: off)."""

    def __init__(self, speaker_encoder, extractor, ambient_db: float | None = None):
        self.encoder, self.extractor = speaker_encoder, extractor
        self.ambient_db = check_ambient_db(ambient_db)
        enc_in = speaker_encoder.spec.inputs[0]
        self.enroll_input = enc_in.name
        self.enroll_samples = int(enc_in.shape[-1])
        self.embedding_output = speaker_encoder.spec.outputs[0].name
        stream = extractor.spec.stream
        conds = stream.conditions if stream else []
        if stream is None or len(conds) != 1:
            raise ArtifactError(f"the extractor must stream and take one condition (the "
                                f"speaker embedding); its manifest lists {conds}")
        self.condition = conds[0]
        self.sample_rate = int(stream.sample_rate or SAMPLE_RATE)
        self.chunk = stream.chunk_samples
        self.lookahead = stream.lookahead_samples

    @classmethod
    def from_artifact(cls, path, backend: str | None = None, threads: int | None = None,
                      ambient_db: float | None = None):
        from avedge.runtime.loader import load
        from avedge.runtime.pipeline import Pipeline

        art = load(path, backend=backend, threads=threads)
        if not isinstance(art, Pipeline) or any(c not in art.components for c in COMPONENTS):
            raise ArtifactError(f"{path} is not a speech-extractor artifact (it needs the "
                                f"components {', '.join(COMPONENTS)}; it has "
                                f"{getattr(art, 'components', ['one graph'])})")
        return cls(art["speaker_encoder"], art["extractor"], ambient_db)

    @property
    def algorithmic_latency_ms(self) -> float:
        return (self.chunk + self.lookahead) / self.sample_rate * 1000

    def enroll(self, wav: np.ndarray) -> np.ndarray:
        """Mono enrollment at the model rate -> speaker embedding (1, E)."""
        x = np.asarray(wav, np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise InputError("the enrollment has NaN/inf samples; give a clean recording")
        if len(x) < MIN_ENROLL_SECONDS * self.sample_rate:
            raise InputError(f"the enrollment is {len(x) / self.sample_rate:.2f} s long; give at "
                             f"least {MIN_ENROLL_SECONDS:.0f} s of the target talker (up to "
                             f"{ENROLL_SECONDS:.0f} s is used)")
        if float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) < SILENCE_RMS:
            raise InputError("the enrollment is silent (below -70 dBFS); record the target "
                             "talker speaking")
        clip = fit_enrollment(x, self.enroll_samples)[None, :]
        return self.encoder.run(**{self.enroll_input: clip})[self.embedding_output]

    def stream(self, embedding: np.ndarray):
        stream = self.extractor.stream(conditions={self.condition: np.asarray(
            embedding, np.float32).reshape(1, -1)})
        if self.ambient_db is None:
            return stream
        return AmbientStream(stream, 10 ** (self.ambient_db / 20))

    def process(self, mixture: np.ndarray, embedding: np.ndarray,
                block: int | None = None) -> ExtractionResult:
        """A whole clip through the Stream, `block` samples at a time (default: 1 s)."""
        x = np.asarray(mixture, np.float32).reshape(-1)
        # No more chunks per block than the stream keeps timings of (same output either way).
        block = min(block or self.sample_rate, TIMINGS_KEPT * self.chunk)
        stream = self.stream(embedding)
        t0 = time.perf_counter()
        pieces, chunk_ms = [], []
        for s in range(0, len(x), block):
            stream.accept(x[s: s + block])
            pieces.append(stream.read())
            chunk_ms += stream.chunk_ms  # the stream keeps only its latest timings
            stream.chunk_ms.clear()
        pieces.append(stream.finish())
        chunk_ms += stream.chunk_ms
        y = np.concatenate([p.reshape(-1) for p in pieces]) if pieces else np.zeros(0, np.float32)
        return ExtractionResult(y, chunk_ms, time.perf_counter() - t0)


class DuplexProcessor:
    """A sound card's full-duplex callback: `block` samples in -> `block` samples out.

    The output lags by the model's lookahead plus one block; a block whose compute
    takes longer than its duration, or an output underrun, counts as a deadline miss.
    Used by `avedge listen` (pyaudio) and, in tests, fed from a file.
    """

    def __init__(self, extraction: Extraction, embedding: np.ndarray, block: int):
        self.stream = extraction.stream(embedding)
        self.block = block
        self.budget_s = block / extraction.sample_rate
        # Prefill: the stream owes `lookahead` samples until finish(), and a block that is
        # not a multiple of the chunk leaves up to chunk - gcd(block, chunk) samples waiting.
        from math import gcd

        prefill = extraction.lookahead + extraction.chunk - gcd(block, extraction.chunk)
        self._fifo = np.zeros(prefill, np.float32)
        self.latency_samples = prefill
        self.blocks = 0
        self.misses = 0
        self.underruns = 0
        # The latest blocks' compute times only: a listening session may last for days.
        self.compute_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)

    def process(self, samples: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        x = np.nan_to_num(np.asarray(samples, np.float32).reshape(-1), nan=0.0,
                          posinf=1.0, neginf=-1.0)  # a glitching mic must not stop the stream
        self.stream.accept(x)
        self._fifo = np.concatenate([self._fifo, self.stream.read().reshape(-1)])
        n = len(x)
        if len(self._fifo) < n:
            self.underruns += 1
            self._fifo = np.concatenate([self._fifo, np.zeros(n - len(self._fifo), np.float32)])
        out, self._fifo = self._fifo[:n], self._fifo[n:]
        dt = time.perf_counter() - t0
        self.compute_ms.append(dt * 1e3)
        self.blocks += 1
        if dt > self.budget_s * n / self.block:
            self.misses += 1
        return out

    def pyaudio_callback(self, in_data, frame_count, time_info, status):
        import pyaudio

        x = np.frombuffer(in_data, dtype=np.float32)
        return self.process(x).astype(np.float32).tobytes(), pyaudio.paContinue

    def stats(self) -> dict:
        """Counts over the whole session; compute times over its latest TIMINGS_KEPT blocks."""
        ms = np.asarray(self.compute_ms) if self.compute_ms else np.zeros(1)
        return {"blocks": self.blocks, "deadline_misses": self.misses,
                "underruns": self.underruns,
                "compute_ms_median": round(float(np.median(ms)), 4),
                "compute_ms_p90": round(float(np.percentile(ms, 90)), 4)}


def si_sdr_db(est: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR (dB) of est against ref, same length, zero-mean."""
    n = min(len(est), len(ref))
    est = est[:n].astype(np.float64) - est[:n].mean()
    ref = ref[:n].astype(np.float64) - ref[:n].mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))
