"""Video read/write through PyAV: synthetic clips (a moving square + a sine) round-tripped."""

from fractions import Fraction

import numpy as np
import pytest
from avedge.runtime.errors import InputError
from avedge.runtime.video_io import read_video, write_video

H, W, SQ = 64, 96, 16
SR, TONE = 16000, 440.0


def square_clip(n, step=1):
    """n frames with a white square whose left edge is at x = step * i in frame i."""
    frames = np.zeros((n, H, W, 3), np.uint8)
    for i in range(n):
        frames[i, 24:24 + SQ, step * i:step * i + SQ] = 255
    return frames


def square_x(img) -> int:
    """Left edge of the bright square, read from its middle row."""
    return int(np.flatnonzero(img[24 + SQ // 2].mean(axis=1) > 128)[0])


def sine(seconds):
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * TONE * t)).astype(np.float32)


def dominant_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()]


def test_mp4_round_trip_frames_square_and_audio(tmp_path):
    path = write_video(tmp_path / "clip.mp4", square_clip(50), 25, audio=sine(2.0), rate=SR)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    v = read_video(path)
    assert v.frames.shape == (50, H, W, 3) and v.frames.dtype == np.uint8
    assert v.fps == 25.0 and v.duration_s == pytest.approx(2.0)
    assert list(v.source_index) == list(range(50))
    assert np.allclose(v.frame_times, np.arange(50) / 25)
    assert all(abs(square_x(f) - i) <= 1 for i, f in enumerate(v.frames))
    assert v.audio_rate == SR and v.audio.dtype == np.float32 and v.audio.ndim == 1
    assert 2.0 <= len(v.audio) / SR <= 2.1  # AAC pads its last 1024-sample frame
    assert abs(dominant_hz(v.audio, SR) - TONE) < 5


def test_30_fps_comes_back_at_25_by_nearest_frame(tmp_path):
    write_video(tmp_path / "c30.mp4", square_clip(30, step=2), 30)  # 1 s
    v = read_video(tmp_path / "c30.mp4", fps=25)
    assert v.frames.shape[0] == 25 and v.duration_s == pytest.approx(1.0)
    assert v.source_frames == 30 and v.source_fps == pytest.approx(30.0)
    expected = np.round(np.arange(25) / 25 * 30).astype(int)  # nearest 30 fps frame
    assert list(v.source_index) == list(expected)
    assert all(abs(square_x(f) - 2 * j) <= 1 for f, j in zip(v.frames, expected, strict=True))
    assert v.audio is None and v.audio_rate is None


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path):
    import av

    pts_ms = [0, 30, 50, 120, 130, 200, 290, 300, 380, 460]  # last frame shown 40 ms
    frames = square_clip(len(pts_ms), step=5)
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        for img, t in zip(frames, pts_ms, strict=True):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
    v = read_video(path, fps=25)
    assert v.source_frames == len(pts_ms)
    assert len(v.frames) == pytest.approx(0.5 * 25, abs=1)  # 0..500 ms
    src = np.array(pts_ms) / 1000
    for k, (img, j) in enumerate(zip(v.frames, v.source_index, strict=True)):
        t = min(k / 25, src[-1])
        assert abs(src[j] - t) <= np.abs(src - t).min() + 1e-6  # the nearest source frame
        assert v.frame_times[k] == pytest.approx(src[j], abs=1e-3)
        assert abs(square_x(img) - 5 * j) <= 1


@pytest.mark.parametrize("ext", [".mkv", ".avi", ".webm"])
def test_other_containers_round_trip(tmp_path, ext):
    path = write_video(tmp_path / f"clip{ext}", square_clip(25), 25, audio=sine(1.0), rate=SR)
    v = read_video(path, audio_rate=SR)
    assert v.frames.shape == (25, H, W, 3)
    assert all(abs(square_x(f) - i) <= 1 for i, f in enumerate(v.frames))
    assert v.audio_rate == SR and abs(dominant_hz(v.audio, SR) - TONE) < 5


def test_grayscale_and_odd_sized_frames_are_written(tmp_path):
    gray = np.full((5, 31, 45), 200, np.uint8)
    v = read_video(write_video(tmp_path / "g.mp4", gray, 25))
    assert v.frames.shape == (5, 32, 46, 3)
    assert abs(int(v.frames[:, :31, :45].mean()) - 200) <= 3


def test_crf_trades_size_for_fidelity(tmp_path):
    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(rng.integers(0, 256, (10, H // 4, W // 4, 3), np.uint8), 4, 1), 4, 2)
    err, size = {}, {}
    for crf in (16, 36):
        p = write_video(tmp_path / f"c{crf}.mp4", base, 25, crf=crf, preset="veryfast")
        size[crf] = p.stat().st_size
        err[crf] = np.abs(read_video(p).frames.astype(int) - base).mean()
    assert size[36] < 0.7 * size[16] and err[36] > err[16]
    with pytest.raises(InputError, match="crf must be an integer from 0 to 51"):
        write_video(tmp_path / "x.mp4", base, 25, crf=60)
    assert not (tmp_path / "x.mp4").exists()


def test_bad_inputs_are_refused_naming_the_file(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match=r"notes\.mp4.*not a readable video.*mp4, mov, avi"):
        read_video(fake)
    with pytest.raises(InputError, match=r"missing\.mp4.*does not exist"):
        read_video(tmp_path / "missing.mp4")
    import soundfile as sf

    sf.write(tmp_path / "voice.wav", sine(0.5), SR)
    with pytest.raises(InputError, match=r"voice\.wav.*has no video stream"):
        read_video(tmp_path / "voice.wav")
    with pytest.raises(InputError, match="accepted extensions"):
        write_video(tmp_path / "x.gif", square_clip(2), 25)
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 4), np.uint8), 25)
    with pytest.raises(InputError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32), 25)
    assert not (tmp_path / "x.mp4").exists()
