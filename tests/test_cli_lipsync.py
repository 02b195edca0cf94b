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
