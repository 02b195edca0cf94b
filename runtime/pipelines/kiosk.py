"""The kiosk's real-time loop: audio chunks as they arrive -> lip-sync frames, on time or
skipped, never drifting. Numpy only (the engine is runtime/pipelines/lipsync.py LipSync in
mode="live"; anything with its push/flush interface works).

    >>> q = AudioQueue()                                                  # doctest: +SKIP
    >>> FilePacer(samples, q).start()     # or a microphone callback calling q.put(pcm)
    >>> loop = KioskLoop(engine, q, sinks=[server, writer])
    >>> stats = loop.run()                # until the source closes the queue (or stop())
    >>> stats["latency_ms"]["median"], stats["dropped_per_minute"]

Time: every arrival and ready time is wall-clock seconds from `wall_clock()` (time.time()
anchored once, then advanced by time.monotonic(): comparable with a browser's
performance.timeOrigin + performance.now() on the same machine, and never jumping).

Stream positions: the loop numbers the samples of the input stream (16 kHz) as they arrive;
frame j of the stream covers samples [640 j, 640 (j+1)). A chunk may say where it starts
(`start`); then a gap before it is filled with silence and an overlap trimmed, so the
stream stays on the wall clock; a chunk without `start` follows the previous one.

Latency of frame j = the wall time it is ready (handed to the sinks) minus the arrival time
of the chunk holding the last sample of frame j (sample 640 (j+1) - 1): what a viewer
perceives as the mouth trailing the voice, with the page's own display delay added by the
page (the server reports that part separately).

Skipping, not drifting: before each push the loop compares the audio waiting (arrived but
not yet given to the engine) with `max_backlog_ms`. Past it, whole frames (640 samples) of
the oldest waiting audio are not given to the engine (the newest `keep_ms` is kept), so the
engine catches up at once instead of falling further behind; those frames are counted as
`dropped` (and listed to the sinks, which repeat the previous picture for them). The engine
then sees a cut in its audio: its frame k maps to stream frame k + the frames skipped before
the audio it came from (kept per skip in `_skips`).

Malformed input never ends the stream (each case counted in `stats["input"]`): bytes are
read as float32 (what pyaudio's paFloat32 gives); int16/int32/uint8 PCM is scaled to
[-1, 1]; float64 cast; stereo (n, 2) averaged; NaN/inf set to 0; empty chunks ignored; a
chunk that is not numbers at all (strings, objects, complex) is dropped; a gap (a `start`
past the stream's end) is filled with silence; an engine error on a chunk (InputError) is
counted and the chunk's frames skipped.

Hook for tests and benchmarks: `KioskLoop(..., before_push=fn)` calls fn(n_samples) right
before each engine.push (e.g. `lambda n: time.sleep(0.05)` slows the engine artificially).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from avedge.runtime.errors import AvedgeError

SAMPLE_RATE = 16000
FPS = 25
HOP = SAMPLE_RATE // FPS  # samples per frame

_T0_WALL, _T0_MONO = time.time(), time.monotonic()


def wall_clock() -> float:
    """Wall-clock seconds (epoch) that advance monotonically (see the module doc)."""
    return _T0_WALL + (time.monotonic() - _T0_MONO)


# ----------------------------------------------------------------------------- input

@dataclass
class Chunk:
    pcm: object  # whatever the source gave: bytes, any-dtype array, ...
    start: int | None  # stream sample index of its first sample, or None: follows the last
    arrived: float  # wall_clock() when it arrived


class AudioQueue:
    """Hand-off from a source thread (microphone callback, file pacer) to the loop.
    Unbounded on purpose: the loop, not the source, decides what to skip."""

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = threading.Event()

    def put(self, pcm, start: int | None = None, arrived: float | None = None) -> None:
        self._q.put(Chunk(pcm, start, wall_clock() if arrived is None else arrived))

    def close(self) -> None:
        """End of input: the loop flushes the engine and returns."""
        self.closed.set()
        self._q.put(None)

    def get_all(self, timeout: float) -> tuple[list[Chunk], bool]:
        """Every chunk waiting (blocking up to `timeout` s for the first; 0: not at all) and
        whether the input has ended."""
        out, ended = [], False
        try:
            item = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
            while True:
                if item is None:
                    ended = True
                else:
                    out.append(item)
                item = self._q.get_nowait()
        except queue.Empty:
            pass
        return out, ended


class FilePacer(threading.Thread):
    """Delivers audio (16 kHz float32: one array, or an iterable of arrays such as a file
    decoded as it goes) into `q` in `chunk_ms` chunks, each at the wall time its last sample
    would have been recorded: a file that behaves like a microphone. `start_at` (wall
    clock) delays the first chunk; `delay_hook(k)` -> extra seconds before chunk k (tests
    make chunks late with it). An AvedgeError from the source (a file corrupt part-way)
    ends the input there: kept in `error`, the stream closes normally."""

    def __init__(self, samples, q: AudioQueue, chunk_ms: float = 20.0,
                 start_at: float | None = None, delay_hook=None):
        super().__init__(daemon=True, name="kiosk-file-pacer")
        self.source = samples
        self.q, self.delay_hook = q, delay_hook
        self.chunk = max(1, round(chunk_ms * SAMPLE_RATE / 1000))
        self.start_at = start_at
        self.stop_event = threading.Event()
        self.error: AvedgeError | None = None
        self.samples_sent = 0

    def _pieces(self):
        blocks = [self.source] if isinstance(self.source, np.ndarray) else self.source
        buf = np.zeros(0, np.float32)
        for block in blocks:
            block = np.asarray(block, np.float32).reshape(-1)
            buf = np.concatenate([buf, block]) if len(buf) else block
            while len(buf) >= self.chunk:
                yield buf[: self.chunk]
                buf = buf[self.chunk:]
        if len(buf):
            yield buf

    def run(self) -> None:
        t0 = self.start_at if self.start_at is not None else wall_clock()
        s = 0
        try:
            for k, piece in enumerate(self._pieces()):
                due = t0 + (s + len(piece)) / SAMPLE_RATE \
                    + (self.delay_hook(k) if self.delay_hook else 0.0)
                while (wait := due - wall_clock()) > 0:
                    if self.stop_event.wait(min(wait, 0.05)):
                        return
                self.q.put(piece, start=s)
                s += len(piece)
                self.samples_sent = s
        except AvedgeError as exc:
            self.error = exc
        finally:
            self.q.close()

    def stop(self) -> None:
        self.stop_event.set()


def clean_pcm(pcm, counts: dict) -> np.ndarray | None:
    """Any chunk a source may give -> float32 mono 1-D, or None when it holds no usable
    samples; every repair is counted in `counts` (see the module doc)."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        raw = bytes(pcm)
        if len(raw) % 4:  # not whole float32 samples: nothing in it can be trusted
            counts["bad_chunks"] += 1
            return None
        a = np.frombuffer(raw, np.float32)
    else:
        try:
            a = np.asarray(pcm)
        except (ValueError, TypeError):
            counts["bad_chunks"] += 1
            return None
    if a.dtype.kind in "iu":
        counts["converted_chunks"] += 1
        info = np.iinfo(a.dtype)
        mid = (int(info.max) + int(info.min) + 1) / 2  # 0 for signed, 128 for uint8
        a = (a.astype(np.float64) - mid) / (int(info.max) + 1 - mid)
    elif a.dtype.kind == "f":
        if a.dtype != np.float32:
            counts["converted_chunks"] += 1
    else:  # booleans, strings, objects, complex: not audio
        counts["bad_chunks"] += 1
        return None
    if a.size == 0:
        counts["empty_chunks"] += 1
        return None
    if a.ndim == 2 and min(a.shape) <= 8:  # (n, channels) as soundfile, or (channels, n)
        a = a.mean(axis=1 if a.shape[1] <= 8 else 0)
        counts["converted_chunks"] += 1
    elif a.ndim != 1:  # a scalar, (n, many), 3-D...: not a layout of mono/stereo audio
        counts["bad_chunks"] += 1
        return None
    a = np.asarray(a, np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        counts["nonfinite_samples"] += int(bad.sum())
        a = np.where(bad, np.float32(0), a)
    return a


# ----------------------------------------------------------------------------- stats

class LatencyStats:
    """Median/p95 over a whole run in bounded memory: a 0.5 ms histogram up to 10 s
    (hours at 25 fps would make a list grow without end)."""

    BIN_MS = 0.5
    MAX_MS = 10000.0

    def __init__(self):
        self.hist = np.zeros(int(self.MAX_MS / self.BIN_MS) + 1, np.int64)
        self.n, self.max = 0, -math.inf
        self.min = math.inf

    def add(self, ms: float) -> None:
        self.hist[int(min(max(ms, 0.0), self.MAX_MS) / self.BIN_MS)] += 1
        self.n += 1
        self.max, self.min = max(self.max, ms), min(self.min, ms)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        k = int(np.searchsorted(np.cumsum(self.hist), q * self.n, side="left"))
        return round((k + 0.5) * self.BIN_MS, 1)

    def summary(self) -> dict:
        return {"median": self.quantile(0.5), "p95": self.quantile(0.95),
                "max": round(self.max, 1) if self.n else None,
                "min": round(self.min, 1) if self.n else None, "n": self.n}


@dataclass
class KioskFrame:
    """A frame as the sinks get it: the engine's frame placed on the stream's clock."""

    index: int  # stream frame index (time_s = index / 25)
    time_s: float
    rgb: np.ndarray  # (size, size, 3) uint8
    pose: np.ndarray
    arrived: float  # wall time the audio at the end of this frame arrived
    ready: float  # wall time the loop handed it to the sinks
    ms: dict = field(default_factory=dict)  # engine per-stage ms

    @property
    def latency_ms(self) -> float:
        return (self.ready - self.arrived) * 1000.0


class Sink:
    """What the loop calls; every method optional (override what you need). Sinks must
    return fast: slow work goes to their own thread."""

    def on_audio(self, start: int, pcm: np.ndarray, arrived: float) -> None: ...
    def on_frame(self, frame: KioskFrame) -> None: ...
    def on_dropped(self, indices: list[int]) -> None: ...
    def on_end(self, stats: dict) -> None: ...


# ----------------------------------------------------------------------------- loop

class KioskLoop:
    """Drives `engine` (LipSync live) with the audio of `source` as it arrives."""

    def __init__(self, engine, source: AudioQueue, sinks=(), max_backlog_ms: float = 120.0,
                 keep_ms: float = 40.0, before_push=None, poll_s: float = 0.1):
        if max_backlog_ms < keep_ms:
            raise AvedgeError(f"max_backlog_ms ({max_backlog_ms}) must be at least keep_ms "
                              f"({keep_ms})")
        self.engine, self.source, self.sinks = engine, source, list(sinks)
        self.max_backlog = int(max_backlog_ms * SAMPLE_RATE / 1000)
        self.keep = int(keep_ms * SAMPLE_RATE / 1000)
        self.before_push, self.poll_s = before_push, poll_s
        self._stop = threading.Event()
        self.stream_end = 0  # samples of the stream so far (arrived + gap-filled)
        self.pushed_end = 0  # stream position up to which audio went to (or was skipped by)
        self.engine_pos = 0  # samples the engine has been given
        # (engine sample position, frames skipped before it): engine frame k whose audio
        # began at or after that position is stream frame k + skipped
        self._skips: list[tuple[int, int]] = [(0, 0)]
        self._pending: deque[np.ndarray] = deque()  # arrived audio not yet pushed, in order
        self._pending_n = 0
        # (stream position of a chunk's end, arrival): arrival of any sample still needed
        self._arrivals: deque[tuple[int, float]] = deque()
        self.counts = {"chunks": 0, "bad_chunks": 0, "empty_chunks": 0, "converted_chunks": 0,
                       "nonfinite_samples": 0, "gap_samples": 0, "overlap_samples": 0,
                       "late_chunks": 0, "engine_errors": 0}
        self.latency = LatencyStats()
        self.frames = 0
        self.dropped = 0
        self.last_index = -1
        self.out_of_order = 0
        self.stage_ms: dict[str, float] = {}
        self.push_ms = 0.0
        self.t_first = None
        self.t_last = None

    def stop(self) -> None:
        """Ask run() to end (from another thread or a signal handler); it flushes first."""
        self._stop.set()

    # ---- input side
    def _accept(self, chunk: Chunk) -> None:
        self.counts["chunks"] += 1
        a = clean_pcm(chunk.pcm, self.counts)
        if a is None:
            return
        if chunk.start is not None:
            start = int(chunk.start)
            if start > self.stream_end:  # a gap: silence keeps the stream on the clock
                gap = start - self.stream_end
                self.counts["gap_samples"] += gap
                self._append(np.zeros(gap, np.float32), chunk.arrived)
            elif start < self.stream_end:  # overlap / repeat: keep only the new part
                cut = min(len(a), self.stream_end - start)
                self.counts["overlap_samples"] += cut
                a = a[cut:]
                if not len(a):
                    return
        end = self.stream_end + len(a)
        due = self.t_first + end / SAMPLE_RATE if self.t_first is not None else None
        if due is not None and chunk.arrived - due > 0.1:
            self.counts["late_chunks"] += 1  # >100 ms behind its place on the stream clock
        self._append(a, chunk.arrived)

    def _append(self, a: np.ndarray, arrived: float) -> None:
        if self.t_first is None:
            self.t_first = arrived - len(a) / SAMPLE_RATE
        start = self.stream_end
        self.stream_end += len(a)
        self._pending.append(a)
        self._pending_n += len(a)
        self._arrivals.append((self.stream_end, arrived))
        for s in self.sinks:
            s.on_audio(start, a, arrived)

    def _arrival_of(self, sample: int) -> float:
        """Arrival time of the chunk holding stream sample `sample`."""
        for end, t in self._arrivals:
            if end > sample:
                return t
        return self._arrivals[-1][1] if self._arrivals else wall_clock()

    # ---- skipping
    def _skip_if_behind(self) -> None:
        if self._pending_n <= self.max_backlog:
            return
        n_frames = (self._pending_n - self.keep) // HOP
        if n_frames <= 0:
            return
        n = n_frames * HOP
        drop_left = n
        while drop_left:  # remove the oldest waiting audio
            head = self._pending[0]
            if len(head) <= drop_left:
                self._pending.popleft()
                drop_left -= len(head)
            else:
                self._pending[0] = head[drop_left:]
                drop_left = 0
        self._pending_n -= n
        # The frames lost are the ones whose audio is gone: the engine's next output frame
        # is its own next frame, which now maps n_frames further on the stream.
        first = self._stream_frame(self.engine_pos // HOP) if self.engine_pos % HOP == 0 else \
            self._stream_frame(self.engine_pos // HOP + 1)
        self._skips.append((self.engine_pos, self._skips[-1][1] + n_frames))
        self.pushed_end += n
        self.dropped += n_frames
        lost = list(range(first, first + n_frames))
        for s in self.sinks:
            s.on_dropped(lost)

    def _stream_frame(self, k: int) -> int:
        """Engine frame k -> stream frame index (the skip in force where its audio began)."""
        pos = k * HOP
        skipped = 0
        for at, total in self._skips:
            if at <= pos:
                skipped = total
            else:
                break
        return k + skipped

    # ---- the loop
    def _take(self, n: int) -> np.ndarray:
        """The oldest `n` waiting samples (fewer if fewer wait)."""
        parts, left = [], n
        while left and self._pending:
            head = self._pending[0]
            if len(head) <= left:
                parts.append(self._pending.popleft())
                left -= len(head)
            else:
                parts.append(head[:left])
                self._pending[0] = head[left:]
                left = 0
        pcm = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._pending_n -= len(pcm)
        return pcm

    def _push(self, pcm: np.ndarray | None) -> list:
        if self.before_push is not None:
            self.before_push(0 if pcm is None else len(pcm))
        t = time.perf_counter()
        try:
            frames = self.engine.flush() if pcm is None else self.engine.push(pcm)
        except AvedgeError:
            self.counts["engine_errors"] += 1
            frames = []
        self.push_ms += (time.perf_counter() - t) * 1000
        return frames

    def _emit(self, frames) -> None:
        for f in frames:
            now = wall_clock()
            j = self._stream_frame(int(f.index))
            if j <= self.last_index:
                self.out_of_order += 1  # never expected from the engine; counted, not shown
                continue
            self.last_index = j
            arrived = self._arrival_of((j + 1) * HOP - 1)
            kf = KioskFrame(j, j / FPS, f.rgb, f.pose, arrived, now, dict(f.ms or {}))
            self.latency.add(kf.latency_ms)
            self.frames += 1
            for k, v in kf.ms.items():
                self.stage_ms[k] = self.stage_ms.get(k, 0.0) + float(v)
            for s in self.sinks:
                s.on_frame(kf)
        # arrivals before the oldest frame still to come are not needed any more
        # (nor any older than a minute: an engine that emits nothing must not grow it)
        need = max((self.last_index + 1) * HOP, self.stream_end - 60 * SAMPLE_RATE)
        while len(self._arrivals) > 1 and self._arrivals[0][0] <= need:
            self._arrivals.popleft()

    def run(self) -> dict:
        """Until the source ends (or stop()): push what arrived, emit frames, skip when
        behind; then flush the engine. Returns stats().

        The audio goes to the engine one frame (HOP samples, aligned on the engine's frame
        boundaries) at a time, and the queue is checked again between frames: a frame is
        handed to the sinks as soon as it is computed, not after the whole backlog, and a
        backlog is noticed (and skipped) while it builds up."""
        ended = False
        while (not ended or self._pending_n) and not self._stop.is_set():
            wait = 0.0 if self._pending_n or ended else self.poll_s
            chunks, end_now = self.source.get_all(wait)
            ended = ended or end_now
            for c in chunks:
                self._accept(c)
            self._skip_if_behind()
            if self._pending_n:
                pcm = self._take(HOP - self.engine_pos % HOP)
                self.pushed_end += len(pcm)
                self.engine_pos += len(pcm)
                self._emit(self._push(pcm))
        self._emit(self._push(None))
        self.t_last = wall_clock()
        stats = self.stats()
        for s in self.sinks:
            s.on_end(stats)
        return stats

    def stats(self) -> dict:
        seconds = self.stream_end / SAMPLE_RATE
        per_frame = {k: round(v / self.frames, 3) for k, v in self.stage_ms.items()} \
            if self.frames else {}
        per_frame["push"] = round(self.push_ms / self.frames, 3) if self.frames else None
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "dropped_per_minute": round(self.dropped / seconds * 60, 2) if seconds else 0.0,
            "audio_seconds": round(seconds, 3),
            "latency_ms": self.latency.summary(),
            "stage_ms_per_frame": per_frame,
            "input": dict(self.counts),
            "out_of_order": self.out_of_order,
            "max_backlog_ms": self.max_backlog * 1000 / SAMPLE_RATE,
        }


class Mp4Sink(Sink):
    """Frames and their audio into a video file as they come (runtime/video_io.VideoWriter:
    memory does not grow with the length; the file appears only when close() succeeds).
    Encoding runs on its own thread so the loop never waits for x264. A frame the loop
    skipped (or that never came) is the previous picture repeated, so the video stays
    aligned with the full audio; at the end the last picture covers any audio left."""

    def __init__(self, path, size: int, rate: int = SAMPLE_RATE, fps: int = FPS):
        from avedge.runtime.video_io import VideoWriter

        self.writer = VideoWriter(path, fps, (size, size), audio_rate=rate)
        self.size = size
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.repeated = 0  # frames written as a copy of the previous one
        self._next = 0
        self._last = None
        self._samples = 0
        self._thread = threading.Thread(target=self._work, name="kiosk-mp4", daemon=True)
        self._thread.start()

    def on_audio(self, start: int, pcm: np.ndarray, arrived: float) -> None:
        self._q.put(("a", pcm))

    def on_frame(self, frame: KioskFrame) -> None:
        self._q.put(("f", frame.index, frame.rgb))

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # keep draining: the loop must not notice
            try:
                if item[0] == "a":
                    self.writer.write_audio(item[1])
                    self._samples += len(item[1])
                else:
                    self._frame(item[1], item[2])
            except Exception as exc:  # noqa: BLE001 - a full disk...: close() raises it
                self._error = exc

    def _frame(self, index: int, rgb) -> None:
        if self._last is None:
            self._last = rgb  # frames before the first one: its picture
        while self._next < index:
            self.writer.write(self._last)
            self.repeated += 1
            self._next += 1
        self.writer.write(rgb)
        self._last = rgb
        self._next = index + 1

    def close(self):
        """Finish: cover the audio with frames, flush, move the file into place. Raises what
        went wrong while writing (the partial file is removed)."""
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            self.writer.abort()
            raise self._error
        try:
            need = -(-self._samples // HOP)
            if self._last is not None and self._next < need:
                self._frame(need - 1, self._last)
                self.repeated += 1
        except BaseException:
            self.writer.abort()
            raise
        return self.writer.close()

    def abort(self) -> None:
        self._q.put(None)
        self._thread.join()
        self.writer.abort()
