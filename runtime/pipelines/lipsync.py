"""Lip-sync at run time: audio in, frames of a talking photo out, in bounded memory. Numpy only.

    >>> from avedge.runtime.pipelines.lipsync import LipSync
    >>> from avedge.runtime.vision.face_photo import prepare_face
    >>> face = prepare_face("portrait.jpg", 256)                             # doctest: +SKIP
    >>> engine = LipSync("artifacts/lips-pose-cpu", "artifacts/face-renderer-cpu", face)
    >>> frames = engine.push(pcm)      # float32 mono 16 kHz, any length     # doctest: +SKIP
    >>> frames += engine.flush()       # end of input                        # doctest: +SKIP
    >>> frames[0].index, frames[0].rgb.shape, engine.stats["ms"]             # doctest: +SKIP
    (0, (256, 256, 3), {'pose': 210.3, 'render': 160.2, 'paste': 12.0})

Stage 2 (the lips-pose artifact, one graph "pose") maps a FIXED window of W frames of
audio (W * hop_samples samples) and noise (W, 12) to poses (W, 12). Windows start every
`hop` frames; window k covers frames [s_k, s_k + W) with s_k = k * hop - A, frames before
0 being silence. In each window:
  - positions [0, A) are left context only (weight 0);
  - positions [W - L, W) are not yet reliable (L = the manifest's lookahead_frames; the
    model has not heard what follows them): weight 0;
  - in between, weight 1 with linear ramps over X frames at both ends, so consecutive
    windows, which overlap there, are cross-faded (weights sum to 1: no seam).
  A = W - L - hop - X. A frame is final once no later window can weigh it, i.e. after the
  window whose reliable part ends at it: frames are emitted L + X frames behind the newest
  audio (plus up to hop - 1 frames waiting for the next window).
The noise of frame i is drawn from a generator seeded by (seed, i // NOISE_BLOCK) (row
i % NOISE_BLOCK): every window that covers frame i starts its sampler from the same x0
there, so overlapping windows agree, and the same audio always gives the same video.
"file" mode: big hops (throughput: one window per W - 2L - X frames); "live": hop 1,
no cross-fade, frames exactly L behind the newest audio (bounded latency).
At flush the stream is padded with silence until every frame is final.

Stage 1 (the face-renderer artifact, graph render<size>) renders each final pose on the
face's fixed mouth crop (C x C, prepare_face), which is pasted into the framed photo: the
renderer changes nothing outside the crop.

Memory: the audio of one window, the noise of one window and the pose accumulators of
at most W frames, whatever the length of the input (push an hour in chunks: the buffers
stay the same size). Frames are returned to the caller, not kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from avedge.runtime.errors import ArtifactError, InputError

POSE_TASK = "lips-pose"
RENDER_TASK = "face-render"
MODES = ("file", "live")
NOISE_SEED = 1729  # part of the stream's definition: the same audio gives the same video
NOISE_BLOCK = 64  # frames drawn per generator


@dataclass
class Frame:
    index: int
    time_s: float  # index / fps
    rgb: np.ndarray  # (size, size, 3) uint8
    pose: np.ndarray  # (12,) float32 in [0, 1]
    ms: dict = field(default_factory=dict)  # per stage: pose (this frame's share), render, paste


# ----------------------------------------------------------------------------- artifacts

def _open_graph(path, task: str, component: str | None, backend, what: str,
                threads: int | None = None):
    """(session, manifest extra) of one graph of a pipeline artifact of `task`."""
    from avedge.runtime.loader import component_manifests, load
    from avedge.runtime.manifest import PipelineManifest, open_manifest

    p = Path(path)
    spec = open_manifest(p)
    extra = getattr(spec, "extra", None) or {}
    if extra.get("task") != task:
        family = getattr(spec, "family", None) or "unnamed"
        raise ArtifactError(f"{p} is not a {what} artifact (task {extra.get('task')!r}, family "
                            f"{family}); export one with `avedge export "
                            f"{'lips-pose' if task == POSE_TASK else 'face-renderer'} "
                            f"--target cpu --out DIR`")
    if not isinstance(spec, PipelineManifest):
        return load(p, backend=backend, threads=threads), extra
    name = component or next(iter(spec.components))
    if name not in spec.components:
        raise ArtifactError(f"{p} has no graph {name!r} (it has {', '.join(spec.components)}); "
                            f"re-export it")
    component_manifests(p, spec)  # each component's manifest matches the pipeline's hash
    return load(p / spec.components[name].dir, backend=backend, threads=threads), extra


def _need(extra: dict, keys, path) -> None:
    missing = [k for k in keys if k not in extra]
    if missing:
        raise ArtifactError(f"{path}: the manifest's extra lacks {', '.join(missing)}; "
                            f"re-export the artifact")


def _input(session, name: str):
    for s in session.spec.inputs:
        if s.name == name:
            return s
    raise ArtifactError(f"{session.path}: the graph takes {[s.name for s in session.spec.inputs]}"
                        f"; expected an input {name!r}: re-export the artifact")


# ----------------------------------------------------------------------------- the engine

class LipSync:
    """Audio -> frames of the prepared face; see the module docstring.

    hop_frames / crossfade_frames override the mode's defaults (file: crossfade 4 and the
    largest hop that keeps L frames of left context; live: hop 1, crossfade 0). threads:
    each graph's intra-op threads (None: the artifact's target; on a busy 2-core machine
    1 is faster for these small graphs)."""

    def __init__(self, pose_artifact, render_artifact, face, backend: str | None = None,
                 mode: str = "file", hop_frames: int | None = None,
                 crossfade_frames: int | None = None, seed: int = NOISE_SEED,
                 threads: int | None = None):
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode, self.face, self.seed = mode, face, int(seed)
        # stage 2
        self.pose_session, px = _open_graph(pose_artifact, POSE_TASK, None, backend,
                                            "lips-pose", threads)
        _need(px, ("fps", "sample_rate", "hop_samples", "window_frames", "lookahead_frames"),
              pose_artifact)
        self.fps, self.rate = float(px["fps"]), int(px["sample_rate"])
        self.hop_samples = int(px["hop_samples"])
        a_spec, n_spec = _input(self.pose_session, "audio"), _input(self.pose_session, "noise")
        self.window = int(n_spec.shape[1])
        self.dims = int(n_spec.shape[2])
        if tuple(a_spec.shape) != (1, self.window * self.hop_samples):
            raise ArtifactError(f"{pose_artifact}: audio input {tuple(a_spec.shape)} does not "
                                f"match noise {tuple(n_spec.shape)} at {self.hop_samples} "
                                f"samples per frame; re-export the artifact")
        self.lookahead = int(px["lookahead_frames"])
        self._pose_order = [s.name for s in self.pose_session.spec.inputs]
        # stage 1
        size = getattr(face, "size", None)
        from avedge.runtime.manifest import open_manifest

        rx = getattr(open_manifest(Path(render_artifact)), "extra", None) or {}
        if rx.get("task") != RENDER_TASK:
            _open_graph(render_artifact, RENDER_TASK, None, backend, "face-renderer")  # raises
        _need(rx, ("sizes",), render_artifact)
        sizes = {str(k): v for k, v in rx["sizes"].items()}
        if str(size) not in sizes:
            raise InputError(f"output size {size} is not one of the renderer's: "
                             f"{', '.join(sorted(sizes, key=int))}")
        self.render_session, _ = _open_graph(render_artifact, RENDER_TASK, sizes[str(size)],
                                             backend, "face-renderer", threads)
        c = int(_input(self.render_session, "photo").shape[2])
        x0, y0, side = face.crop_box
        if side != c:
            raise ArtifactError(f"{render_artifact}: graph {sizes[str(size)]} takes a {c} px "
                                f"mouth crop but the face was prepared with {side} px; "
                                f"prepare the face and export the renderer with the same "
                                f"avedge version")
        self._render_order = [s.name for s in self.render_session.spec.inputs]
        crop = face.image[y0: y0 + c, x0: x0 + c].astype(np.float32) / 255.0
        self._crop = np.ascontiguousarray(crop.transpose(2, 0, 1)[None])
        self._mouth = np.asarray(face.crop_mouth, np.float32).reshape(1, 4)
        # windows
        W, L = self.window, self.lookahead
        if mode == "live":
            hop = 1 if hop_frames is None else int(hop_frames)
            X = 0 if crossfade_frames is None else int(crossfade_frames)
        else:
            X = min(4, max(0, (W - 2 * L - 1) // 4)) if crossfade_frames is None \
                else int(crossfade_frames)
            hop = max(1, W - 2 * L - X) if hop_frames is None else int(hop_frames)
        A = W - L - hop - X
        if hop < 1 or X < 0 or A < 0:
            raise InputError(f"a window of {W} frames with {L} lookahead cannot take hop "
                             f"{hop} and cross-fade {X}: need hop >= 1 and "
                             f"hop + crossfade <= {W - L}")
        self.hop, self.crossfade, self.context = hop, X, A
        j = np.arange(W, dtype=np.float32)
        w = np.where((j >= A) & (j < W - L), 1.0, 0.0).astype(np.float32)
        if X:
            w *= np.clip((j - A + 1) / (X + 1), 0, 1) * np.clip((W - L - j) / (X + 1), 0, 1)
        self._weights = w[:, None]
        self.latency_frames = L + X  # a frame is emitted this many frames behind the audio
        self.reset()

    # -- state -----------------------------------------------------------------------
    def reset(self) -> None:
        W, hs = self.window, self.hop_samples
        self._start = -self.context  # first frame of the next window
        self._buf = np.zeros(W * hs, np.float32)  # that window's audio (zeros before 0)
        self._filled = self.context * hs
        self._block = (None, None)
        self._noise = np.stack([self._noise_of(self._start + i) for i in range(W)])
        # weighted pose sums of frames [self._emit, self._emit + len) (at most W frames)
        self._acc = np.zeros((W + self.hop, self.dims), np.float64)
        self._wsum = np.zeros(W + self.hop, np.float64)
        self._emit = 0  # next frame to emit
        self._samples = 0  # audio received
        self._ms = {"pose": 0.0, "render": 0.0, "paste": 0.0}
        self._windows = 0
        self._frames = 0
        self._flushed = False

    def _noise_of(self, i: int) -> np.ndarray:
        """x0 of frame i: row i % NOISE_BLOCK of the block drawn from a generator seeded by
        (seed, i // NOISE_BLOCK) (one generator per frame costs ~0.1 ms; per block, 2 us)."""
        b = i // NOISE_BLOCK
        if self._block[0] != b:
            rng = np.random.default_rng([self.seed, b + (1 << 32)])  # b may be negative
            self._block = (b, rng.standard_normal((NOISE_BLOCK, self.dims)).astype(np.float32))
        return self._block[1][i % NOISE_BLOCK]

    @property
    def buffers_bytes(self) -> int:
        """Bytes held by the stream's buffers (constant: bounded by the window)."""
        return sum(a.nbytes for a in (self._buf, self._noise, self._acc, self._wsum))

    @property
    def stats(self) -> dict:
        return {"frames": self._frames, "windows": self._windows, "mode": self.mode,
                "window_frames": self.window, "hop_frames": self.hop,
                "crossfade_frames": self.crossfade, "lookahead_frames": self.lookahead,
                "latency_frames": self.latency_frames,
                "audio_s": round(self._samples / self.rate, 3),
                "ms": {k: round(v, 3) for k, v in self._ms.items()},
                "backend": {"pose": self.pose_session.backend,
                            "render": self.render_session.backend}}

    # -- input -----------------------------------------------------------------------
    def push(self, pcm) -> list[Frame]:
        """Append audio (float32 mono at the artifact's rate); -> the frames now final."""
        if self._flushed:
            raise InputError("this LipSync stream was flushed; call reset() to start another")
        x = np.asarray(pcm, np.float32).reshape(-1) if np.ndim(pcm) <= 1 else None
        if x is None:
            raise InputError(f"audio must be 1-D mono samples at {self.rate} Hz; got shape "
                             f"{np.shape(pcm)}")
        if not np.isfinite(x).all():
            raise InputError("audio has NaN/inf samples; give a clean recording")
        self._samples += len(x)
        out: list[Frame] = []
        n_win = len(self._buf)
        off = 0
        while off < len(x):
            take = min(len(x) - off, n_win - self._filled)
            self._buf[self._filled: self._filled + take] = x[off: off + take]
            self._filled += take
            off += take
            if self._filled == n_win:
                out += self._step(final_before=self._start + self.hop + self.context)
        return out

    def flush(self) -> list[Frame]:
        """End of input: silence after it until every frame is final; -> the last frames."""
        if self._flushed:
            return []
        n = -(-self._samples // self.hop_samples)  # frames: the last partial one included
        out: list[Frame] = []
        while self._emit < n:
            self._buf[self._filled:] = 0.0
            self._filled = len(self._buf)
            out += self._step(final_before=min(n, self._start + self.hop + self.context))
        self._flushed = True
        return out

    # -- one window ------------------------------------------------------------------
    def _step(self, final_before: int) -> list[Frame]:
        W, hop, hs = self.window, self.hop, self.hop_samples
        t0 = time.perf_counter()
        feeds = {"audio": self._buf[None], "noise": self._noise[None]}
        pose = self.pose_session.run_ordered([feeds[k] for k in self._pose_order])[0][0]
        pose_ms = (time.perf_counter() - t0) * 1e3
        self._windows += 1
        self._ms["pose"] += pose_ms
        if not np.isfinite(pose).all():
            raise ArtifactError(f"the {self.pose_session.backend} graph at "
                                f"{self.pose_session.path} gave NaN/inf poses; try another "
                                f"backend or re-export")
        # accumulate this window's weighted poses for frames >= self._emit
        lo = max(self._start, self._emit)
        hi = self._start + W
        if hi > lo:
            j = slice(lo - self._start, hi - self._start)
            r = slice(lo - self._emit, hi - self._emit)
            self._acc[r] += self._weights[j] * pose[j]
            self._wsum[r] += self._weights[j, 0]
        # emit the frames no later window can weigh
        k = max(0, final_before - self._emit)
        frames = []
        share = pose_ms / max(1, k)
        for i in range(k):
            p = (self._acc[i] / max(self._wsum[i], 1e-12)).clip(0.0, 1.0).astype(np.float32)
            frames.append(self._render(self._emit + i, p, share))
        if k:
            self._acc[:-k] = self._acc[k:]
            self._acc[-k:] = 0.0
            self._wsum[:-k] = self._wsum[k:]
            self._wsum[-k:] = 0.0
            self._emit += k
        # slide the window by hop: audio and noise
        self._buf[: (W - hop) * hs] = self._buf[hop * hs:]
        self._filled = (W - hop) * hs
        self._noise[: W - hop] = self._noise[hop:]
        for i in range(W - hop, W):
            self._noise[i] = self._noise_of(self._start + hop + i)
        self._start += hop
        return frames

    def _render(self, index: int, pose: np.ndarray, pose_ms: float) -> Frame:
        t0 = time.perf_counter()
        feeds = {"photo": self._crop, "pose": pose[None], "mouth": self._mouth}
        out = self.render_session.run_ordered([feeds[k] for k in self._render_order])[0][0]
        t1 = time.perf_counter()
        x0, y0, c = self.face.crop_box
        rgb = self.face.image.copy()
        part = np.clip(out.transpose(1, 2, 0) * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        rgb[y0: y0 + c, x0: x0 + c] = part
        t2 = time.perf_counter()
        ms = {"pose": pose_ms, "render": (t1 - t0) * 1e3, "paste": (t2 - t1) * 1e3}
        self._ms["render"] += ms["render"]
        self._ms["paste"] += ms["paste"]
        self._frames += 1
        return Frame(index, index / self.fps, rgb, pose, ms)


# ----------------------------------------------------------------------------- audio in

AUDIO_ACCEPTED = "an audio file FFmpeg reads (wav, flac, ogg, mp3, m4a) with an audio stream"


def stream_audio(path, rate: int = 16000, chunk_s: float = 1.0):
    """Yield an audio file's samples as mono float32 at `rate`, about chunk_s seconds at a
    time, decoded and resampled as it goes (memory does not grow with the length).
    Missing, unreadable, corrupt (also part-way through), empty, NaN/inf: InputError."""
    import av

    p = Path(path)
    if not p.is_file():
        raise InputError(f"audio file {str(p)!r} does not exist; expected {AUDIO_ACCEPTED}")
    try:
        container = av.open(str(p), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"audio file {str(p)!r} is not readable audio "
                         f"({getattr(exc, 'strerror', None) or type(exc).__name__}); "
                         f"expected {AUDIO_ACCEPTED}") from None
    with container:
        if not container.streams.audio:
            raise InputError(f"{str(p)!r} has no audio stream; expected {AUDIO_ACCEPTED}")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate))
        want = max(1, int(chunk_s * rate))
        parts: list[np.ndarray] = []
        have = total = 0
        try:
            for frame in container.decode(stream):
                for f in resampler.resample(frame):
                    parts.append(f.to_ndarray().reshape(-1))
                    have += len(parts[-1])
                if have >= want:
                    out = np.concatenate(parts).astype(np.float32)
                    _finite(out, p, total, rate)
                    total += len(out)
                    parts, have = [], 0
                    yield out
            for f in resampler.resample(None):
                parts.append(f.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise InputError(f"audio file {str(p)!r} is corrupt or truncated after "
                             f"{total / rate:.1f} s "
                             f"({getattr(exc, 'strerror', None) or type(exc).__name__}); "
                             f"expected {AUDIO_ACCEPTED}") from None
        out = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        _finite(out, p, total, rate)
        if total + len(out) == 0:
            raise InputError(f"audio file {str(p)!r} is empty (no samples)")
        if len(out):
            yield out


def _finite(x: np.ndarray, p: Path, offset: int, rate: int) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = offset + int(np.argmax(bad))
        raise InputError(f"audio file {str(p)!r} has NaN/inf samples (first at "
                         f"{first / rate:.3f} s); the file is corrupt, fix or re-export it")
