"""The lip-sync engine (runtime/pipelines/lipsync.py) on tiny artifacts, and the streaming
video writer it feeds.

The stand-in pose graph computes each frame's pose from that frame's audio and noise only
(plus, optionally, a term that depends on the frame's position in the window): with it,
every window predicts the same value for a frame, so the stitched output must equal a
direct numpy computation, which checks the window indices, the audio alignment, the
noise seeding by absolute frame, the flush and the cross-fade normalisation at once.
"""

import dataclasses
import os
import resource

import numpy as np
import pytest
from avedge.runtime.errors import ArtifactError, InputError

torch = pytest.importorskip("torch")

HOP = 640
DIMS = 12


class StandInPose(torch.nn.Module):
    input_names = ("audio", "noise")
    output_names = ("pose",)

    def __init__(self, frames: int, ctx: float = 0.0):
        super().__init__()
        self.frames, self.ctx = frames, ctx
        self.register_buffer("gain", torch.linspace(1.0, 3.0, DIMS))
        self.register_buffer("pos", torch.arange(frames, dtype=torch.float32).view(1, -1, 1))

    def forward(self, audio, noise):
        e = audio.view(1, self.frames, HOP).abs().mean(-1, keepdim=True)  # (1, W, 1)
        x = e * self.gain * 4.0 + 0.1 * noise + self.ctx * self.pos / self.frames
        return (torch.sigmoid(x),)


def reference_pose(audio: np.ndarray, n: int, seed: int) -> np.ndarray:
    a = np.concatenate([audio, np.zeros(n * HOP - len(audio), np.float32)]).reshape(n, HOP)
    e = np.abs(a).mean(1, keepdims=True)
    from avedge.runtime.pipelines.lipsync import NOISE_BLOCK

    blocks = [np.random.default_rng([seed, b + (1 << 32)]).standard_normal((NOISE_BLOCK, DIMS))
              for b in range(n // NOISE_BLOCK + 1)]
    noise = np.concatenate(blocks)[:n].astype(np.float32)
    x = e * np.linspace(1.0, 3.0, DIMS, dtype=np.float32) * 4.0 + 0.1 * noise
    return 1.0 / (1.0 + np.exp(-x))


def onnx_target():
    from avedge.targets import get_target

    # ONNX only: the engine logic does not depend on the format, and .pte lowering takes
    # ~40 s per graph here (the cpu export of both formats is tested in tests/models).
    return dataclasses.replace(get_target("cpu"), backends=("onnxruntime",))


def export_pose(out, frames: int, lookahead: int, ctx: float = 0.0):
    from avedge.targets.export import export_pipeline

    m = StandInPose(frames, ctx).eval()
    ex = (torch.randn(1, frames * HOP) * 0.1, torch.randn(1, frames, DIMS))
    extra = {"task": "lips-pose", "fps": 25, "sample_rate": 16000, "hop_samples": HOP,
             "window_frames": frames, "pose_dims": [f"d{i}" for i in range(DIMS)],
             "rest_pose": [0.0] * DIMS, "steps": 1, "method": "euler", "guidance": 1.0,
             "lookahead_frames": lookahead}
    export_pipeline(onnx_target(), {"pose": (m, ex)}, out, family="lips-pose", extra=extra)
    return out


def export_renderer(out, crop: int):
    from avedge.models import face_renderer as FR
    from avedge.targets.export import export_pipeline

    m = FR.build(FR.Dims(crop256=crop, crop512=crop))
    comps = {c.name: (c.module, c.example_inputs) for c in FR.export_plan(m, None)}
    export_pipeline(onnx_target(), comps, out, family="face-renderer",
                    extra=FR.manifest_extra())
    return out


class TinyRender(torch.nn.Module):
    """A render graph of three ops (the real one has ~200, ~0.7 ms per call at any size
    here): the hour-long stream test needs 90 000 render calls."""

    input_names = ("photo", "pose", "mouth")
    output_names = ("frame",)

    def forward(self, photo, pose, mouth):
        return photo * (1.0 - 0.5 * pose.mean()) + 0.0 * mouth.sum()


def export_tiny_render(out, crop: int):
    from avedge.models import face_renderer as FR
    from avedge.targets.export import export_pipeline

    ex = (torch.rand(1, 3, crop, crop), torch.rand(1, DIMS), torch.rand(1, 4))
    export_pipeline(onnx_target(), {"render256": (TinyRender(), ex),
                                    "render512": (TinyRender(), ex)},
                    out, family="face-renderer", extra=FR.manifest_extra())
    return out


@pytest.fixture(scope="module")
def face():
    skimage_data = pytest.importorskip("skimage.data")
    from avedge.runtime.vision.face_photo import prepare_face

    return prepare_face(skimage_data.astronaut(), 256)


def tiny_face(face, crop: int):
    """The prepared face with a small crop around its mouth (for a tiny render graph)."""
    m = face.mouth
    x0, y0 = int(m.cx) - crop // 2, int(m.cy) - crop // 3
    cm = np.array([m.cx - x0, m.cy - y0, crop / 5.4, m.angle], np.float32)
    return dataclasses.replace(face, crop_box=(x0, y0, crop), crop_mouth=cm)


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("lipsync")
    return {"pose": export_pose(d / "pose", 12, 2), "ctx": export_pose(d / "ctx", 12, 2, 0.4),
            "render": export_renderer(d / "render", 16),
            "tiny_render": export_tiny_render(d / "tiny_render", 16)}


def run_all(engine, audio, chunk):
    frames = []
    for i in range(0, len(audio), chunk):
        frames += engine.push(audio[i: i + chunk])
    return frames + engine.flush()


def speechy(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    env = np.repeat(rng.uniform(0, 0.5, n // 1600 + 1), 1600)[:n]
    return (rng.standard_normal(n) * env).astype(np.float32)


@pytest.mark.parametrize("mode,chunk", [("file", 16000), ("file", 333), ("live", 640),
                                        ("live", 97)])
def test_stitched_poses_equal_the_per_frame_reference(arts, face, mode, chunk):
    from avedge.runtime.pipelines.lipsync import NOISE_SEED, LipSync

    audio = speechy(3.05)  # 76.25 frames: the last partial frame is kept
    eng = LipSync(arts["pose"], arts["render"], tiny_face(face, 16), mode=mode)
    frames = run_all(eng, audio, chunk)
    n = 77
    assert [f.index for f in frames] == list(range(n))
    got = np.stack([f.pose for f in frames])
    np.testing.assert_allclose(got, reference_pose(audio, n, NOISE_SEED), atol=2e-5)
    assert frames[10].time_s == pytest.approx(0.4)
    st = eng.stats
    assert st["frames"] == n and st["windows"] >= n // eng.hop
    assert set(st["ms"]) == {"pose", "render", "paste"} and st["ms"]["render"] > 0
    assert eng.flush() == []


def test_live_frames_lag_the_audio_by_the_lookahead(arts, face):
    from avedge.runtime.pipelines.lipsync import LipSync

    eng = LipSync(arts["pose"], arts["render"], tiny_face(face, 16), mode="live")
    audio = speechy(2.0)
    emitted = 0
    for k in range(1, 51):  # one frame of audio at a time
        emitted += len(eng.push(audio[(k - 1) * HOP: k * HOP]))
        assert emitted == max(0, k - eng.lookahead)  # frames exactly L behind the audio
    assert eng.hop == 1 and eng.latency_frames == 2


def test_cross_fade_removes_the_window_seams(arts, face):
    """The ctx graph's prediction drifts with the position in the window: without a
    cross-fade the trajectory jumps where one window hands over to the next."""
    from avedge.runtime.pipelines.lipsync import NOISE_SEED, LipSync

    audio = np.full(16000 * 3, 0.01, np.float32)
    base = reference_pose(audio, 75, NOISE_SEED)  # the same frames without the drift
    steps = {}
    for x in (0, 3):
        eng = LipSync(arts["ctx"], arts["render"], tiny_face(face, 16), mode="file",
                      hop_frames=4, crossfade_frames=x)
        drift = np.stack([f.pose for f in run_all(eng, audio, 4000)]) - base
        steps[x] = np.abs(np.diff(drift[5:-5], axis=0)).max()
    assert steps[3] < 0.6 * steps[0], steps


def test_frames_are_the_photo_outside_the_crop_and_rendered_inside(arts, face):
    from avedge.runtime.pipelines.lipsync import LipSync

    tf = tiny_face(face, 16)
    eng = LipSync(arts["pose"], arts["render"], tf, mode="file")
    frames = run_all(eng, speechy(1.0), 16000)
    x0, y0, c = tf.crop_box
    f = frames[5].rgb
    assert f.shape == (256, 256, 3) and f.dtype == np.uint8
    outside = np.ones(f.shape[:2], bool)
    outside[y0:y0 + c, x0:x0 + c] = False
    assert np.array_equal(f[outside], face.image[outside])
    assert not np.array_equal(f[y0:y0 + c, x0:x0 + c], face.image[y0:y0 + c, x0:x0 + c])


def test_bad_inputs_and_mismatched_artifacts(arts, face, tmp_path):
    from avedge.runtime.pipelines.lipsync import LipSync

    tf = tiny_face(face, 16)
    with pytest.raises(InputError, match="mode must be one of file, live"):
        LipSync(arts["pose"], arts["render"], tf, mode="fast")
    with pytest.raises(ArtifactError, match="not a lips-pose artifact"):
        LipSync(arts["render"], arts["render"], tf)
    with pytest.raises(ArtifactError, match="not a face-renderer artifact"):
        LipSync(arts["pose"], arts["pose"], tf)
    with pytest.raises(ArtifactError, match="takes a 16 px mouth crop but the face was "
                                            "prepared with 144"):
        LipSync(arts["pose"], arts["render"], face)
    eng = LipSync(arts["pose"], arts["render"], tf)
    with pytest.raises(InputError, match="NaN"):
        eng.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InputError, match="1-D mono"):
        eng.push(np.zeros((2, 10), np.float32))
    assert eng.push(np.zeros(0, np.float32)) == []
    assert eng.flush() == []  # no audio, no frames
    with pytest.raises(InputError, match="flushed"):
        eng.push(np.zeros(10, np.float32))


def test_an_hour_of_audio_streams_in_bounded_memory(arts, face):
    """3600 s pushed in 1 s chunks: 90 000 frames go through, the engine's buffers keep
    their size, and the process's peak RSS grows by far less than the hour of audio
    (230 MB as float32) or its frames (17 GB)."""
    from avedge.runtime.pipelines.lipsync import LipSync

    small = tiny_face(face, 16)
    x0, y0, c = small.crop_box  # a 40x40 photo around the crop: the copy per frame is cheap
    small = dataclasses.replace(small, image=face.image[y0 - 12: y0 + 28, x0 - 12: x0 + 28].copy(),
                                crop_box=(12, 12, c))
    eng = LipSync(arts["pose"], arts["tiny_render"], small, mode="file", threads=1)
    chunk = speechy(1.0, seed=1)
    size0 = eng.buffers_bytes
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    count, last = 0, -1
    for _ in range(3600):
        for f in eng.push(chunk):
            assert f.index == last + 1
            last = f.index
            count += 1
    count += len(eng.flush())
    assert count == 3600 * 25
    assert eng.buffers_bytes == size0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 40, grown_mb
    assert eng.stats["audio_s"] == 3600.0


# ----------------------------------------------------------------------------- the writer

def test_video_writer_streams_frames_and_audio(tmp_path):
    from avedge.runtime.video_io import VideoWriter, read_video

    t = np.arange(50 * HOP) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = tmp_path / "s.mp4"
    with VideoWriter(out, 25, (64, 48), audio_rate=16000) as w:
        for i in range(50):
            w.write(np.full((48, 64, 3), i * 5, np.uint8))
            w.write_audio(tone[i * HOP: (i + 1) * HOP])
    v = read_video(out, audio_rate=16000)
    assert v.frames.shape == (50, 48, 64, 3)
    assert np.abs(v.frames[:, 20, 20, 0].astype(int) - np.arange(50) * 5).max() <= 3
    a = v.audio[2000: 30000]
    assert np.corrcoef(a, tone[2000: 30000])[0, 1] > 0.99
    assert sorted(os.listdir(tmp_path)) == ["s.mp4"]


def test_video_writer_leaves_nothing_on_failure(tmp_path):
    from avedge.runtime.video_io import VideoWriter

    out = tmp_path / "f.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, 25, (32, 32), audio_rate=16000) as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("stage 2 died")
    with pytest.raises(InputError, match="is 16x16; this video is 32x32"), \
            VideoWriter(out, 25, (32, 32)) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
    w = VideoWriter(out, 25, (32, 32))
    with pytest.raises(InputError, match="no frame was written"):
        w.close()
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "x.mp4", 25, (32, 32))
    with pytest.raises(InputError, match="accepted extensions"):
        VideoWriter(tmp_path / "x.gif", 25, (32, 32))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(InputError, match="cannot write"):
            VideoWriter(ro / "x.mp4", 25, (32, 32))


# ----------------------------------------------------------------------------- the real family

def export_tiny_lips_pose(out, frames: int = 12, target=None):
    """The lips-pose family's sampler at tiny dims through its own export plan."""
    from avedge.models.lipsync import example_inputs
    from avedge.models.lipsync import pose_flow as pf
    from avedge.models.lipsync.sampler import PoseSampler

    from avedge.api import export

    torch.manual_seed(0)
    flow = pf.PoseFlow(pf.Dims(n_mels=16, d_model=16, heads=2, ffn=16, layers=1), frames)
    with torch.no_grad():  # the head starts at zero (v = 0): give it weights to test with
        flow.head.weight.normal_(0, 0.3)
    sampler = PoseSampler(flow.eval()).eval()
    export(sampler, target or onnx_target(), out, example_inputs=example_inputs(sampler),
           family="lips-pose", measure=False)
    return out


def test_the_lips_pose_family_streams_through_the_engine(tmp_path, arts, face):
    """H1's family (tiny dims, custom ops decomposed in ONNX): any chunking gives the same
    frames, poses in [0, 1], and live mode emits them the lookahead behind the audio."""
    from avedge.runtime.pipelines.lipsync import LipSync

    art = export_tiny_lips_pose(tmp_path / "lp")
    audio = speechy(2.0, seed=5)
    runs = []
    for chunk in (32000, 1000):
        e = LipSync(art, arts["render"], tiny_face(face, 16), mode="file")
        runs.append(np.stack([f.pose for f in run_all(e, audio, chunk)]))
    assert runs[0].shape == (50, 12)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].min() >= 0.0 and runs[0].max() <= 1.0 and runs[0].std(0).mean() > 1e-3
    from avedge.models.lipsync import manifest_extra

    # file mode: the largest hop that keeps `lookahead` frames of context on both sides
    assert e.window == 12 and e.lookahead == manifest_extra()["lookahead_frames"] >= 1
    assert e.hop == e.window - 2 * e.lookahead - e.crossfade and e.hop >= 1
    live = LipSync(art, arts["render"], tiny_face(face, 16), mode="live")
    got = [len(live.push(audio[k * HOP:(k + 1) * HOP])) for k in range(20)]
    assert sum(got) == 20 - live.lookahead
