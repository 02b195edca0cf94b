"""`avedge lipsync` through the CLI's main: the mp4, the JSON, and the issue's bad inputs
(each exit code 2 and one line, and no mp4 left behind). Tiny artifacts on onnxruntime:
a stand-in pose graph (tests/runtime/test_lipsync_engine.py) and the real face renderer
at the shipped crop sizes; the shipped lips-pose weights where they exist."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from avedge.cli import main

_spec = importlib.util.spec_from_file_location(
    "lipsync_engine_helpers", Path(__file__).parent / "runtime" / "test_lipsync_engine.py")
eng = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eng)  # the stand-in artifacts


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    from avedge.runtime.vision.face_photo import CROP

    d = tmp_path_factory.mktemp("lipsync-cli")
    return {"pose": eng.export_pose(d / "pose", 12, 2),
            "render": eng.export_renderer(d / "render", CROP[256])}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import soundfile as sf
    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(skimage_data.astronaut()).save(d / "face.png")
    Image.fromarray(skimage_data.coffee()).save(d / "cup.jpg")  # no face
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    sf.write(d / "speech.wav", eng.speechy(2.5), 16000)
    sf.write(d / "silence.wav", np.zeros(16000, np.float32), 16000)
    stereo = np.random.default_rng(3).standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(d / "stereo44k.wav", stereo, 44100)  # 1 s
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    (d / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    return d


def lipsync(arts, inputs, out, *extra, face="face.png", audio="speech.wav"):
    return main(["lipsync", "--face", str(inputs / face), "--audio", str(inputs / audio),
                 "--out", str(out), "--pose-artifact", str(arts["pose"]),
                 "--render-artifact", str(arts["render"]), *extra])


def test_writes_the_mp4_with_audio_and_reports_json(arts, inputs, tmp_path, capsys):
    from avedge.runtime.video_io import read_video

    out = tmp_path / "talk.mp4"
    assert lipsync(arts, inputs, out, "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frames"] == 63 and res["fps"] == 25 and res["size"] == 256  # 2.5 s, ceil
    assert set(res["ms"]) == {"pose", "render", "paste"} and res["fps_compute"] > 0
    assert res["face"]["faces_found"] == 1 and res["face"]["crop_box"][2] == 144
    assert res["artifacts"]["pose"] == str(arts["pose"])
    v = read_video(out, audio_rate=16000)
    assert v.frames.shape == (63, 256, 256, 3)
    assert abs(len(v.audio) / 16000 - 2.5) < 0.1
    # the mouth moves with the (stand-in) poses; the top of the frame is the photo's
    mouth = v.frames[:, 160:200, 100:156].astype(float)
    assert mouth.std(0).mean() > 1.0
    assert v.frames[:, :40].astype(float).std(0).mean() < 1.5
    assert sorted(os.listdir(tmp_path)) == ["talk.mp4"]


def test_silence_and_other_rates_and_channels(arts, inputs, tmp_path, capsys):
    assert lipsync(arts, inputs, tmp_path / "s.mp4", "--json", audio="silence.wav") == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 25
    assert lipsync(arts, inputs, tmp_path / "t.mp4", "--json", audio="stereo44k.wav") == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 25


@pytest.mark.parametrize("case,args,message", [
    ("no face", {"face": "cup.jpg"}, "no frontal face found in"),
    ("broken photo", {"face": "broken.png"}, "is not a readable image"),
    ("missing photo", {"face": "nope.png"}, "does not exist"),
    ("missing audio", {"audio": "nope.wav"}, "audio file .* does not exist"),
    ("corrupt audio", {"audio": "corrupt.wav"}, "is not readable audio"),
    ("empty audio", {"audio": "empty.wav"}, "is empty"),
    ("size", {"extra": ["--size", "300"]}, "--size must be 256 or 512; got '300'"),
    ("backend", {"extra": ["--backend", "tensorrt"]}, "--backend must be one of"),
    ("extension", {"out": "x.gif"}, "accepted extensions are"),
    ("no folder", {"out": "missing/x.mp4"}, "folder .* does not exist"),
])
def test_bad_inputs_one_line_exit_2_no_mp4(arts, inputs, tmp_path, capsys, case, args, message):
    import re

    out = tmp_path / args.get("out", "x.mp4")
    code = lipsync(arts, inputs, out, *args.get("extra", []),
                   face=args.get("face", "face.png"), audio=args.get("audio", "speech.wav"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, case
    assert len(err) == 1 and err[0].startswith("avedge lipsync: error:"), err
    assert re.search(message, err[0]), err[0]
    assert os.listdir(tmp_path) == []


def test_unwritable_folder_and_wrong_artifact(arts, inputs, tmp_path, capsys):
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert lipsync(arts, inputs, ro / "x.mp4") == 2
        assert "cannot write" in capsys.readouterr().err
    code = main(["lipsync", "--face", str(inputs / "face.png"), "--audio",
                 str(inputs / "speech.wav"), "--out", str(tmp_path / "y.mp4"),
                 "--pose-artifact", str(arts["render"]), "--render-artifact",
                 str(arts["render"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a lips-pose artifact" in err[0]
    assert not (tmp_path / "y.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_mid_stream_leaves_no_mp4(arts, inputs, tmp_path, monkeypatch, capsys):
    from avedge.runtime.pipelines import lipsync as L

    calls = {"n": 0}
    real = L.LipSync._render

    def flaky(self, *a):
        calls["n"] += 1
        if calls["n"] == 30:
            raise L.ArtifactError("render graph failed (simulated)")
        return real(self, *a)

    monkeypatch.setattr(L.LipSync, "_render", flaky)
    assert lipsync(arts, inputs, tmp_path / "z.mp4") == 2
    assert "simulated" in capsys.readouterr().err
    assert calls["n"] == 30 and os.listdir(tmp_path) == []


def _face_inputs(size):
    """A real framed face's crop, an open pose, its crop mouth: render graph inputs."""
    skimage_data = pytest.importorskip("skimage.data")
    from avedge.runtime.vision.face_photo import prepare_face

    face = prepare_face(skimage_data.astronaut(), size)
    crop = np.ascontiguousarray((face.crop.astype(np.float32) / 255).transpose(2, 0, 1)[None])
    pose = np.full((1, 12), 0.4, np.float32)
    pose[0, 0], pose[0, 9] = 0.9, 0.0
    return crop, pose, face.crop_mouth[None].astype(np.float32)


@pytest.mark.slow
def test_export_face_renderer_cpu_pte_and_onnx_match_eager(tmp_path, capsys):
    """~90 s here: `avedge export face-renderer --target cpu` writes render256/render512 as
    .pte and .onnx; both backends agree with the eager module on a real face's crop."""
    torch = pytest.importorskip("torch")
    from avedge.models import face_renderer as FR
    from avedge.runtime import load
    from avedge.runtime.vision.face_photo import CROP

    out = tmp_path / "fr"
    assert main(["export", "face-renderer", "--target", "cpu", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["task"] == "face-render" and m["extra"]["crop"] == {
        "256": CROP[256], "512": CROP[512]}
    for size in (256, 512):
        feeds = _face_inputs(size)
        ref = FR.build()(*map(torch.from_numpy, feeds)).detach().numpy()
        comp = out / f"render{size}"
        assert {"model.pte", "model.onnx"} <= {p.name for p in comp.iterdir()}
        for backend in ("executorch", "onnxruntime"):
            got = load(comp, backend=backend).run(photo=feeds[0], pose=feeds[1],
                                                  mouth=feeds[2])["frame"]
            assert got.shape == (1, 3, CROP[size], CROP[size])
            np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=f"{size} {backend}")


@pytest.mark.slow
def test_export_face_renderer_jetson_keeps_the_geometry_fp32(tmp_path):
    """~60 s: jetson-orin's fp16 default does not reach the render graphs (fp16 pixel
    geometry gives NaN at 512); its ONNX files match eager on CPU."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort
    from avedge.models import face_renderer as FR

    out = tmp_path / "fr-jetson"
    assert main(["export", "face-renderer", "--target", "jetson-orin", "--out",
                 str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert {c["recipe"] for c in m["components"].values()} == {"fp32"}
    crop, pose, mouth = _face_inputs(512)
    ref = FR.build()(*map(torch.from_numpy, (crop, pose, mouth))).detach().numpy()
    s = ort.InferenceSession(str(out / "render512" / "model.onnx"),
                             providers=["CPUExecutionProvider"])
    got = s.run(None, {"photo": crop, "pose": pose, "mouth": mouth})[0]
    np.testing.assert_allclose(got, ref, atol=2e-5)
    half = FR.build().half()(*(torch.from_numpy(x).half() for x in (crop, pose, mouth)))
    assert not torch.isfinite(half).all() or (half.float() - torch.from_numpy(ref)).abs().max() > 0.05


def _shipped_pose_weights():
    from avedge.models.registry import get_family

    w = get_family("lips-pose").weights.get("default")
    if w is None or not Path(w).is_file():
        pytest.skip("no shipped lips-pose weights yet")
    return w


@pytest.mark.slow
def test_shipped_weights_end_to_end_silence_is_a_closed_still_mouth(inputs, tmp_path,
                                                                    capsys):
    """The default artifacts (shipped lips-pose weights and the renderer, exported for cpu
    and cached: minutes the first time): speech moves the mouth, silence keeps it at the
    rest pose."""
    _shipped_pose_weights()
    from avedge.runtime.manifest import open_manifest
    from avedge.runtime.pipelines.lipsync import LipSync
    from avedge.runtime.vision.face_photo import prepare_face

    from avedge.cli.common import default_artifact
    from avedge.cli.lipsync_cmd import renderer_artifact

    out = tmp_path / "talk.mp4"
    assert main(["lipsync", "--face", str(inputs / "face.png"), "--audio",
                 str(inputs / "speech.wav"), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frames"] == 63 and out.is_file()
    pose_art = default_artifact("lips-pose", "cpu")
    rest = np.asarray(open_manifest(pose_art).extra["rest_pose"], np.float32)
    e = LipSync(pose_art, renderer_artifact("cpu"), prepare_face(inputs / "face.png", 256))
    silent = np.stack([f.pose for f in e.push(np.zeros(16000 * 3, np.float32)) + e.flush()])
    assert np.abs(silent - rest).mean() < 0.05
    assert silent.std(0).max() < 0.03  # still
