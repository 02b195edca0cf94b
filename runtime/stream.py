"""Stream: feed a stateful chunked model any amount of signal at a time.

    >>> from avedge.runtime import load
    >>> sess = load("artifacts/tiny-stream-cpu")          # doctest: +SKIP
    >>> stream = sess.stream()                            # doctest: +SKIP
    >>> pieces = []
    >>> for block in blocks_from_microphone():            # doctest: +SKIP
    ...     stream.accept(block)          # any length; buffered into whole chunks
    ...     if stream.ready():
    ...         pieces.append(stream.read())  # output of every complete chunk
    >>> pieces.append(stream.finish())    # flush: total output length == total input length
    >>> stream.reset()                    # ready for the next utterance

The model's state lives here (passed explicitly in and out of the graph each chunk),
never in the session; so does history kept as a ring buffer (manifest `rings`, see
runtime/ring_state.py). A model with lookahead L emits output delayed by L samples;
the stream drops those first L samples and flushes L zeros at finish(), so output
sample n is aligned with input sample n. Chunks of any size are buffered; a chunk
with the wrong channel layout, a non-float dtype or non-finite values is refused
with an error and leaves the stream exactly as it was.

Time runs along each streamed tensor's `time_axis` (manifest format 2): a model whose
chunk input is (1, T, 3) (e.g. poses) takes blocks (1, n, 3) and returns its output in
its own layout, split and joined along the output's time axis. A block may also be
1-D when every other axis of the chunk input has size 1.
"""

from __future__ import annotations

import time
from collections import deque
from fractions import Fraction

import numpy as np
from avedge.runtime.errors import InputError
from avedge.runtime.ring_state import RingState
from avedge.runtime.session import check_array

# Compute times kept for reports: the latest chunks only. A stream may run for days (a
# hearable): a float kept per chunk, and one per callback by listen, grew a process by
# ~12 MB an hour (benchmarks/bench_stream_soak.py found it).
TIMINGS_KEPT = 4096


class Stream:
    def __init__(self, session, conditions: dict | None = None):
        spec = session.spec.stream
        if spec is None:
            raise InputError(f"{session.path} is not a streaming model (its manifest has no "
                             f"stream section); use Session.run instead")
        self.session = session
        self.spec = spec
        chunk_spec = session.spec.input(spec.input)
        out_spec = session.spec.output(spec.output)
        # Buffers keep time on the last axis; blocks and results are moved to and from
        # the model's own layout at the edges.
        self._in_axis, self._out_axis = chunk_spec.time_axis, out_spec.time_axis
        self._in_shape = list(chunk_spec.shape)
        self._lead = _without(chunk_spec.shape, self._in_axis)  # e.g. (1,) for (1, 128)
        self._out_lead = _without(out_spec.shape, self._out_axis)
        self.chunk = spec.chunk_samples
        self._dtype = np.dtype(chunk_spec.dtype)
        self._out_dtype = np.dtype(out_spec.dtype)
        out_names = [s.name for s in session.spec.outputs]
        self._out_index = out_names.index(spec.output)
        # Output samples per input sample (1 for same-rate models like enhancers).
        self._ratio = Fraction(out_spec.shape[self._out_axis], self.chunk)
        self._skip_total = int(spec.lookahead_samples * self._ratio)
        self._state_pairs = [(p.input, p.output) for p in spec.state]
        self._state_out_index = [out_names.index(o) for _, o in self._state_pairs]
        self._rings = [(RingState(r.to_json(), tuple(session.spec.output(r.output).shape),
                                  np.dtype(session.spec.output(r.output).dtype)),
                        out_names.index(r.output)) for r in spec.rings]
        self._ring_by_input = {ring.input: ring for ring, _ in self._rings}
        self._conditions = self._check_conditions(conditions or {})
        # Compute time (ms) of the latest TIMINGS_KEPT chunks; chunks_run counts them all.
        self.chunk_ms: deque[float] = deque(maxlen=TIMINGS_KEPT)
        self.chunks_run = 0
        self.reset()

    def _check_conditions(self, conditions: dict) -> dict:
        wanted = self.spec.conditions
        unknown = sorted(set(conditions) - set(wanted))
        missing = [n for n in wanted if n not in conditions]
        if unknown or missing:
            expected = ", ".join(f"{n} {tuple(self.session.spec.input(n).shape)}"
                                 for n in wanted) or "none"
            raise InputError(f"stream conditions: unknown {unknown}, missing {missing}; this "
                             f"model takes: {expected}")
        return {n: check_array(self.session.spec.input(n), conditions[n]) for n in wanted}

    def reset(self) -> None:
        """Back to the initial state; buffered input and unread output are dropped."""
        self._state = {n: self.session.init_state[n].copy() for n, _ in self._state_pairs}
        for ring, _ in self._rings:
            ring.reset()
        self._buf = np.zeros(self._lead + (0,), self._dtype)
        self._out: list[np.ndarray] = []
        self._skip = self._skip_total
        self._n_in = 0
        self._n_out = 0
        self._finished = False

    def accept(self, samples) -> None:
        if self._finished:
            raise InputError("this stream was finished; call reset() to start a new one")
        x = np.asarray(samples)
        if x.dtype.kind != "f":
            raise InputError(f"stream input has dtype {x.dtype}; give floating-point samples "
                             f"(they are converted to {self._dtype})")
        squeezable = all(d == 1 for d in self._lead)
        if x.ndim == 1 and squeezable:
            x = x.reshape(self._lead + (-1,))
        elif x.ndim == len(self._in_shape) and x.ndim:
            x = np.moveaxis(x, self._in_axis, -1)
        if x.shape[:-1] != self._lead:
            want = ["T" if i == self._in_axis else str(d) for i, d in enumerate(self._in_shape)]
            raise InputError(f"stream input has shape {np.shape(samples)}; expected "
                             f"({', '.join(want)}) with any number T of samples on axis "
                             f"{self._in_axis}" + (" or a 1-D array" if squeezable else ""))
        if not np.isfinite(x).all():
            raise InputError("stream input contains NaN or inf samples; the block was refused "
                             "and the stream is unchanged")
        self._buf = np.concatenate([self._buf, x.astype(self._dtype, copy=False)], axis=-1)
        self._n_in += x.shape[-1]

    def ready(self) -> bool:
        """True when at least one whole chunk is buffered."""
        return self._buf.shape[-1] >= self.chunk

    def read(self) -> np.ndarray:
        """Run every complete buffered chunk; return their (aligned) output."""
        return self._to_model_layout(self._read())

    def finish(self) -> np.ndarray:
        """Flush: zero-pad the partial chunk and the lookahead, return the rest of the
        output so that the total equals the total input length."""
        head = self._read()
        want = int(self._n_in * self._ratio)
        # Output counted after the lookahead skip, so running padded chunks until it
        # covers the input flushes the lookahead too.
        while self._n_out + sum(o.shape[-1] for o in self._out) < want:
            pad = np.zeros(self._lead + (self.chunk - self._buf.shape[-1],), self._dtype)
            self._run_chunk(np.concatenate([self._buf, pad], axis=-1))
            self._buf = self._buf[..., :0]
        before = self._n_out
        tail = self._take()[..., : want - before]
        self._n_out = want
        self._finished = True
        return self._to_model_layout(np.concatenate([head, tail], axis=-1))

    def _read(self) -> np.ndarray:
        while self.ready():
            self._run_chunk(self._buf[..., : self.chunk])
            self._buf = self._buf[..., self.chunk:]
        return self._take()

    def _run_chunk(self, chunk: np.ndarray) -> None:
        arrays = []
        for spec in self.session.spec.inputs:
            name = spec.name
            if name == self.spec.input:
                arrays.append(np.ascontiguousarray(np.moveaxis(chunk, -1, self._in_axis)))
            elif name in self._state:
                arrays.append(self._state[name])
            elif name in self._ring_by_input:
                arrays.append(self._ring_by_input[name].taps())
            else:
                arrays.append(self._conditions[name])
        t0 = time.perf_counter()
        outs = self.session.run_ordered(arrays)
        self.chunk_ms.append((time.perf_counter() - t0) * 1e3)
        self.chunks_run += 1
        for (name, _), idx in zip(self._state_pairs, self._state_out_index):
            self._state[name] = outs[idx]
        for ring, idx in self._rings:
            ring.push(outs[idx])
        y = np.moveaxis(outs[self._out_index], self._out_axis, -1)
        if self._skip:
            drop = min(self._skip, y.shape[-1])
            y, self._skip = y[..., drop:], self._skip - drop
        self._out.append(y)

    def _take(self) -> np.ndarray:
        if not self._out:
            return np.zeros(self._out_lead + (0,), self._out_dtype)
        y = np.concatenate(self._out, axis=-1)
        self._out = []
        self._n_out += y.shape[-1]
        return y

    def _to_model_layout(self, y: np.ndarray) -> np.ndarray:
        return np.moveaxis(y, -1, self._out_axis)


def _without(shape, axis: int) -> tuple:
    return tuple(d for i, d in enumerate(shape) if i != axis)
