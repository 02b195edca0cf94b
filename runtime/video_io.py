"""Video files in and out for the runtime: numpy + PyAV (FFmpeg), no torch.

    >>> from avedge.runtime.video_io import read_video, write_video      # doctest: +SKIP
    >>> v = read_video("talk.mp4")            # any frame rate, resampled to 25 fps
    >>> v.frames.shape, v.fps, v.audio_rate   # doctest: +SKIP
    ((250, 480, 640, 3), 25.0, 48000)
    >>> v.source_index[:4]                    # which decoded frame each output frame is
    >>> write_video("out.mp4", v.frames, 25, audio=v.audio, rate=v.audio_rate)  # doctest: +SKIP

Documented handling:
  - containers: whatever FFmpeg reads (mp4, mov, avi, mkv, webm, ...); the first video
    stream is used, the first audio stream (if any) gives `audio`;
  - any or a variable frame rate: resampled to a constant `fps` by nearest timestamp: output
    frame k is the source frame whose presentation time is nearest to t0 + k / fps (t0 the
    first frame's time); `source_index` and `frame_times` say which frame and when. The
    output covers the video's duration (last timestamp + last frame's duration);
  - any pixel format (RGBA, grayscale, YUV): converted to RGB uint8;
  - audio: any channels, mixed to mono float32; kept at its own rate unless `audio_rate` is
    given (then resampled by FFmpeg); None when the file has no audio stream. Sample 0 is at
    the first video frame's time (a later-starting track is padded with silence, an earlier
    one trimmed). Audio and video lengths are not forced equal (AAC pads to 1024-sample
    frames; the caller compares `duration_s` with the audio length);
  - AVI carries no presentation times (FFmpeg's guesses disorder B-frames): its frames are
    counted at the stream's nominal rate;
  - missing file, not a video, no video stream, no decodable frame, corrupt data: InputError,
    one line naming the file. A truncated mp4/mov (index at the end) is refused; a
    truncated mkv/webm yields the frames before the cut (compare `source_frames`).
Frames are kept in memory at full size: fine for clips (10 s of 640x480 is ~230 MB at
25 fps); a caller with long videos should read windows or crop as it goes.
Writes are atomic (a temporary sibling, renamed into place).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from avedge.runtime.errors import InputError
from avedge.runtime.fsutil import atomic_path

ACCEPTED = "a video file FFmpeg can read (mp4, mov, avi, mkv, webm) with a video stream"
# Output containers -> (video codec, audio codec). H.264 and AAC where the container takes
# them (libx264 ships in PyAV's wheel); webm only takes VP8/VP9 and Vorbis/Opus.
WRITE_CODECS = {
    ".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "aac"),
    ".avi": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus"),
}


@dataclass
class Video:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB at a constant `fps`
    fps: float
    audio: np.ndarray | None  # (S,) float32 mono, or None without an audio stream
    audio_rate: int | None
    frame_times: np.ndarray  # (N,) float64 s: timestamp of the source frame used for each
    source_index: np.ndarray  # (N,) int64: decoded-frame index used for each output frame
    source_frames: int  # frames decoded from the file
    source_fps: float  # the file's average frame rate (decoded frames / their span)

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def read_video(path, fps: float = 25.0, audio_rate: int | None = None) -> Video:
    """Read a video file as RGB frames at a constant `fps` and its audio track as mono."""
    import av  # lazy: `import avedge.runtime` stays light

    p = Path(path)
    if not p.is_file():
        raise InputError(f"video file {str(p)!r} does not exist; expected {ACCEPTED}")
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps!r}")
    try:
        container = av.open(str(p), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"{str(p)!r} is not a readable video ({_reason(exc)}); "
                         f"expected {ACCEPTED}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{str(p)!r} has no video stream; expected {ACCEPTED}")
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if container.streams.audio else None
        try:
            picked, audio, rate, stats = _decode(av, container, vstream, astream, fps,
                                                 audio_rate)
        except av.FFmpegError as exc:
            raise InputError(f"{str(p)!r} is corrupt or truncated ({_reason(exc)}); "
                             f"expected {ACCEPTED}") from None
    if not picked:
        raise InputError(f"{str(p)!r} has a video stream but no decodable frame; "
                         f"expected {ACCEPTED}")
    frames = np.stack([img for img, _, _ in picked])
    return Video(frames, float(fps), audio, rate,
                 np.array([t for _, t, _ in picked], np.float64),
                 np.array([i for _, _, i in picked], np.int64), *stats)


def _decode(av, container, vstream, astream, fps, audio_rate):
    """One pass over the packets: pick output frames as timestamps arrive (so only the
    picked frames are converted and kept), collect the audio."""
    vstream.thread_type = "AUTO"
    resampler = None
    if astream is not None:
        resampler = av.AudioResampler(format="flt", layout="mono",
                                      rate=audio_rate or astream.rate)
    chunks: list[np.ndarray] = []
    picked: list[tuple[np.ndarray, float, int]] = []
    prev = None  # (time, index, av frame, cached rgb array)
    t0 = None
    n = 0
    last_dur = None
    streams = [vstream] + ([astream] if astream is not None else [])
    # AVI stores no presentation times: with B-frames FFmpeg's guesses are out of order.
    # AVI is constant-rate by design, so frames are counted at the nominal rate.
    nominal = None
    if "avi" in container.format.name.split(","):
        nominal = float(vstream.average_rate or vstream.guessed_rate or fps)
    audio_t0 = None
    for packet in container.demux(*streams):
        for frame in packet.decode():
            if packet.stream.type == "audio":
                if audio_t0 is None and frame.pts is not None and frame.time_base:
                    audio_t0 = float(frame.pts * frame.time_base)
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                continue
            t = n / nominal if nominal else _frame_time(frame, n, vstream)
            if prev is not None and t <= prev[0]:
                continue  # a repeated or out-of-order timestamp: keep the first
            if frame.duration:
                last_dur = float(frame.duration * frame.time_base)
            if t0 is None:
                t0 = t
            cur = [t, n, frame, None]
            n += 1
            if prev is not None:
                # Every output time before this frame's time is nearest to prev or to cur.
                while (target := t0 + len(picked) / fps) < t:
                    src = prev if target - prev[0] <= t - target else cur
                    picked.append(_take(src))
            prev = cur
    if resampler is not None:
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if prev is None:
        return [], None, None, (0, 0.0)
    span = prev[0] - t0
    if last_dur is None or last_dur <= 0:
        last_dur = span / (n - 1) if n > 1 else 1.0 / fps
    total = max(1, round((span + last_dur) * fps))
    del picked[total:]
    while len(picked) < total:  # output times past the last frame's time
        picked.append(_take(prev))
    audio, rate = None, None
    if astream is not None:
        rate = int(audio_rate or astream.rate)
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        # Sample 0 of `audio` is at the first video frame's time (the tracks may start apart).
        shift = round(((audio_t0 or 0.0) - t0) * rate) if nominal is None else 0
        audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 \
            else audio[-shift:]
    return picked, audio, rate, (n, n / (span + last_dur))


def _frame_time(frame, n: int, vstream) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    rate = vstream.average_rate or vstream.guessed_rate or 25
    return n / float(rate)  # no timestamps: the container's nominal rate


def _take(src) -> tuple[np.ndarray, float, int]:
    if src[3] is None:  # converted once even when it fills several output frames
        src[3] = src[2].to_ndarray(format="rgb24")
    return src[3], src[0], src[1]


def _reason(exc) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def write_video(path, frames, fps: float, audio=None, rate: int = 16000,
                crf: int = 18, preset: str = "medium") -> Path:
    """Write RGB uint8 frames (N, H, W, 3) (or grayscale (N, H, W)) at `fps`, with an
    optional mono float32 audio track at `rate` Hz: H.264 + AAC (VP9 + Opus for .webm).
    Odd widths/heights get one edge column/row repeated (4:2:0 needs even sizes). crf:
    H.264's constant rate factor (18: near-transparent, as written clips are read back;
    higher is smaller and blurrier, 0-51); preset: libx264's speed/size trade-off."""
    import av

    p = Path(path)
    codecs = WRITE_CODECS.get(p.suffix.lower())
    if codecs is None:
        raise InputError(f"cannot write {str(p)!r}: accepted extensions are "
                         f"{', '.join(WRITE_CODECS)}")
    frames = _check_frames(frames)
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps!r}")
    if not (isinstance(crf, (int, np.integer)) and 0 <= crf <= 51):
        raise InputError(f"crf must be an integer from 0 to 51, got {crf!r}")
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or not np.isfinite(audio).all():
            raise InputError(f"audio must be a finite 1-D (mono) array, got shape {audio.shape}")
    if not p.parent.is_dir():
        raise InputError(f"cannot write {str(p)!r}: folder {str(p.parent)!r} does not exist")
    with atomic_path(p) as tmp, av.open(str(tmp), "w") as out:
        vs = out.add_stream(codecs[0], rate=Fraction(fps).limit_denominator(1001))
        vs.height, vs.width = frames.shape[1], frames.shape[2]
        vs.pix_fmt = "yuv420p"
        if codecs[0] == "libx264":
            vs.options = {"crf": str(int(crf)), "preset": str(preset)}
        aus = None
        if audio is not None:
            aus = out.add_stream(codecs[1], rate=int(rate), layout="mono")
        for img in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(vs.encode(None))
        if aus is not None and len(audio):
            af = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
            af.sample_rate, af.pts = int(rate), 0
            out.mux(aus.encode(af))  # PyAV cuts it into the encoder's frame size
        if aus is not None:
            out.mux(aus.encode(None))
    return p


class VideoWriter:
    """A video written one frame at a time, its audio muxed as it comes: memory does not
    grow with the length. The file appears at `path` only when close() succeeds; an error
    (or abort(), or leaving a `with` block by an exception) removes everything.

        with VideoWriter("out.mp4", 25, (256, 256), audio_rate=16000) as w:
            for frame, pcm in chunks:    # (H, W, 3) uint8, float32 mono
                w.write(frame)
                w.write_audio(pcm)

    H.264 + AAC (VP9 + Opus for .webm), as write_video. Odd frame sizes get one edge
    column/row repeated (4:2:0 needs even sizes)."""

    def __init__(self, path, fps: float, size: tuple[int, int], audio_rate: int | None = None):
        import os
        import tempfile

        import av

        self.path = Path(path)
        codecs = WRITE_CODECS.get(self.path.suffix.lower())
        if codecs is None:
            raise InputError(f"cannot write {str(self.path)!r}: accepted extensions are "
                             f"{', '.join(WRITE_CODECS)}")
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps!r}")
        self.width, self.height = int(size[0]), int(size[1])
        if min(self.width, self.height) < 2:
            raise InputError(f"frame size must be at least 2x2, got {size!r}")
        if not self.path.parent.is_dir():
            raise InputError(f"cannot write {str(self.path)!r}: folder "
                             f"{str(self.path.parent)!r} does not exist")
        try:  # a hidden sibling: the rename into place is atomic
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.",
                                       suffix=f".tmp{self.path.suffix}", dir=self.path.parent)
        except OSError as exc:
            raise InputError(f"cannot write {str(self.path)!r}: {exc.strerror or exc} in "
                             f"folder {str(self.path.parent)!r}") from None
        os.close(fd)
        self._tmp = Path(tmp)
        self.frames = 0
        self.samples = 0
        self.audio_rate = int(audio_rate) if audio_rate else None
        try:
            self._out = av.open(str(self._tmp), "w")
            pad_w, pad_h = self.width + self.width % 2, self.height + self.height % 2
            self._vs = self._out.add_stream(codecs[0],
                                            rate=Fraction(fps).limit_denominator(1001))
            self._vs.width, self._vs.height = pad_w, pad_h
            self._vs.pix_fmt = "yuv420p"
            if codecs[0] == "libx264":
                self._vs.options = {"crf": "18"}  # near-transparent, as write_video
            self._as = None
            if self.audio_rate:
                self._as = self._out.add_stream(codecs[1], rate=self.audio_rate,
                                                layout="mono")
        except BaseException:
            self.abort()
            raise
        self._av = av
        self._open = True

    def write(self, frame) -> None:
        """One (H, W, 3) RGB or (H, W) grayscale uint8 frame of the size given."""
        a = _check_frames(np.asarray(frame)[None])[0]
        if a.shape[:2] != (self._vs.height, self._vs.width):
            shape = np.asarray(frame).shape
            raise InputError(f"frame {self.frames} is {shape[1]}x{shape[0]}; this "
                             f"video is {self.width}x{self.height}")
        self._mux(self._vs.encode(self._av.VideoFrame.from_ndarray(a, format="rgb24")))
        self.frames += 1

    def write_audio(self, pcm) -> None:
        """Mono float32 samples at audio_rate, appended to the audio track."""
        if self._as is None:
            raise InputError("this VideoWriter has no audio track (audio_rate was not given)")
        x = np.asarray(pcm, np.float32)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise InputError(f"audio must be a finite 1-D (mono) array, got shape {x.shape}")
        if not len(x):
            return
        af = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, :]), format="flt",
                                              layout="mono")
        af.sample_rate, af.pts = self.audio_rate, self.samples
        self._mux(self._as.encode(af))  # PyAV cuts it into the encoder's frame size
        self.samples += len(x)

    def _mux(self, packets) -> None:
        try:
            self._out.mux(packets)
        except self._av.FFmpegError as exc:  # a full disk, a vanished folder
            raise InputError(f"cannot write {str(self.path)!r} ({_reason(exc)})") from None

    def close(self) -> Path:
        """Flush the encoders and move the file into place."""
        import os

        from avedge.runtime.fsutil import _default_mode

        if not self._open:
            raise InputError(f"{str(self.path)!r} is already closed")
        try:
            if self.frames == 0:
                raise InputError(f"no frame was written to {str(self.path)!r}; a video needs "
                                 f"at least one")
            self._mux(self._vs.encode(None))
            if self._as is not None:
                self._mux(self._as.encode(None))
            self._out.close()
            os.chmod(self._tmp, _default_mode())
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._open = False
        return self.path

    def abort(self) -> None:
        """Stop and remove the partial file; nothing appears at `path`."""
        self._open = False
        out = getattr(self, "_out", None)
        if out is not None:
            import contextlib

            with contextlib.suppress(Exception):  # the partial file is removed either way
                out.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._open:
            self.close()


def _check_frames(frames) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=3)  # grayscale
    if a.ndim != 4 or a.shape[3] != 3 or a.shape[0] == 0 or min(a.shape[1:3]) < 2:
        raise InputError(f"frames must be (N, H, W, 3) RGB or (N, H, W) grayscale with "
                         f"N >= 1 and H, W >= 2, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise InputError(f"frames must be uint8 (0..255), got dtype {a.dtype}")
    pad = ((0, 0), (0, a.shape[1] % 2), (0, a.shape[2] % 2), (0, 0))
    return np.ascontiguousarray(np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a)
