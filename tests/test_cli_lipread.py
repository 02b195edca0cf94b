"""`avedge lipread` through the CLI's main: output, options, and the issue's bad inputs
(each an exit code and one line, or a documented handling). A tiny untrained artifact on
onnxruntime (see tests/runtime/test_lipread_task.py for why not ExecuTorch yet)."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from avedge.cli import main

_spec = importlib.util.spec_from_file_location(
    "lipread_task_helpers", Path(__file__).parent / "runtime" / "test_lipread_task.py")
task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(task)  # its fixtures' helpers: the tiny artifact, face frames


@pytest.fixture(scope="session")
def artifact(tmp_path_factory):
    return task.tiny_lipreader(tmp_path_factory)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from avedge.runtime.audio_io import write_audio
    from avedge.runtime.video_io import write_video

    d = tmp_path_factory.mktemp("videos")
    f = task.face_frames(30)
    lost = f.copy()
    lost[12:16] = 128  # the face gone for 4 frames (a grey card in front of the camera)
    noise = np.random.default_rng(0).integers(0, 256, (10, 240, 320, 3), dtype=np.uint8)
    av = write_video(d / "av.mp4", f, 25, audio=task.tone(30), rate=16000)
    data = av.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(20000))
    (d / "empty.txt").write_text("\n")
    (d / "digits.txt").write_text("123 4 -- !!\n")
    (d / "words.txt").write_text("Bin\nBLUE green,  now\n")
    (d / "grammar.json").write_text(json.dumps({"forms": [[
        {"phrases": ["bin", "lay"]}, {"phrases": ["blue", "green"]},
        {"phrases": ["now"], "optional": True}]]}))
    (d / "notjson.json").write_text("bin blue now")
    (d / "noforms.json").write_text('{"slots": []}')
    return {
        "av": av, "dir": d,
        "mute": write_video(d / "mute.mp4", f, 25),
        "two": write_video(d / "two.mp4", f[:2], 25, audio=task.tone(2), rate=16000),
        "gray": write_video(d / "gray.mp4", f[..., 1], 25),
        "lost": write_video(d / "lost.mp4", lost, 25),
        "noface": write_video(d / "noface.mp4", noise, 25),
        "rgba": _write_rgba(d / "rgba.mov", f[:10]),
        "vfr": _write_vfr(d / "vfr.mkv", f[:12]),
        "long_wav": write_audio(d / "long.wav", task.tone(30, 0.5), 16000),
    }


def _write_rgba(path, frames):
    """RGBA frames in a PNG-in-MOV file (pix_fmt rgba), alpha opaque."""
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("png", rate=25)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "rgba"
        for img in frames:
            rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")))
        out.mux(vs.encode(None))
    return path


def _write_vfr(path, frames):
    """Frames at irregular times (0..460 ms), H.264 in MKV."""
    import av

    pts_ms = [0, 30, 50, 120, 130, 200, 290, 300, 380, 400, 430, 460][: len(frames)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        for img, t in zip(frames, pts_ms, strict=True):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = t, Fraction(1, 1000)
            out.mux(vs.encode(fr))
        out.mux(vs.encode(None))
    return path


def lipread(capsys, artifact, *args):
    rc = main(["lipread", *map(str, args), "--artifact", str(artifact),
               "--backend", task.BACKEND])
    out, err = capsys.readouterr()
    return rc, out, err


def as_json(capsys, artifact, *args) -> dict:
    rc, out, err = lipread(capsys, artifact, *args, "--json")
    assert rc == 0, err
    return json.loads(out)


def refused(capsys, artifact, *args) -> str:
    rc, out, err = lipread(capsys, artifact, *args)
    assert rc == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avedge lipread: error: "), err
    return lines[0]


def test_plain_output_is_the_text_then_one_line_of_costs(capsys, artifact, videos):
    rc, out, err = lipread(capsys, artifact, videos["av"], "--no-lexicon")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0] == as_json(capsys, artifact, videos["av"],
                                                   "--no-lexicon")["text"] != ""
    assert lines[1].startswith("rate 1, audio-visual, 30 frames, RTF ")
    for stage in ("decode", "face/ROI", "model", "search"):
        assert f"{stage} " in lines[1]


def test_json_has_the_issue_keys(capsys, artifact, videos):
    r = as_json(capsys, artifact, videos["av"], "--rate", "4", "--greedy")
    assert {"text", "words", "rate", "modality", "constraint", "rtf", "ms", "frames",
            "frames_interpolated", "finder", "backend", "notes"} <= set(r)
    assert r["constraint"] == "none"  # greedy
    assert (r["rate"], r["modality"], r["frames"]) == (4, "audio-visual", 30)
    assert set(r["ms"]) == {"decode", "face_roi", "model", "search"}
    assert all(set(w) == {"word", "start", "end"} and 0 <= w["start"] < w["end"] <= 1.2
               for w in r["words"])


def test_modality_options(capsys, artifact, videos):
    assert as_json(capsys, artifact, videos["av"], "--no-audio")["modality"] == "video"
    off = as_json(capsys, artifact, videos["av"], "--video-off")
    assert (off["modality"], off["finder"]) == ("audio", None)
    only = as_json(capsys, artifact, "--audio", videos["long_wav"])
    assert (only["modality"], only["frames"]) == ("audio", 43)  # 1.7 s at 25 fps
    r = as_json(capsys, artifact, videos["av"], "--audio", videos["long_wav"])
    assert (r["modality"], r["frames"]) == ("audio-visual", 30)
    assert r["audio_video_mismatch_s"] == pytest.approx(0.5, abs=0.01)
    assert any("differ by 0.500 s" in n for n in r["notes"])


def test_video_without_audio_track_is_read_from_video_and_says_so(capsys, artifact, videos):
    r = as_json(capsys, artifact, videos["mute"])
    assert r["modality"] == "video"
    assert any("mute.mp4 has no audio track" in n for n in r["notes"])
    rc, _, err = lipread(capsys, artifact, videos["mute"])
    assert rc == 0 and "note: mute.mp4 has no audio track" in err
    assert "no audio track" in refused(capsys, artifact, videos["mute"], "--video-off")


def test_documented_handling_of_awkward_videos(capsys, artifact, videos):
    assert as_json(capsys, artifact, videos["two"])["frames"] == 2
    gray = as_json(capsys, artifact, videos["gray"])
    assert gray["frames"] == 30 and "geometry" in gray["finder"]
    assert as_json(capsys, artifact, videos["rgba"])["frames"] == 10
    vfr = as_json(capsys, artifact, videos["vfr"])
    assert vfr["frames"] == pytest.approx(0.5 * 25, abs=1)  # 0..500 ms at 25 fps
    lost = as_json(capsys, artifact, videos["lost"])
    assert set(range(12, 16)) <= set(lost["frames_interpolated"])
    assert len(lost["frames_interpolated"]) <= 8
    assert any("interpolated" in n and "12-15" in n for n in lost["notes"])


def test_bad_videos_are_refused_in_one_line(capsys, artifact, videos):
    assert "no face" in refused(capsys, artifact, videos["noface"])
    assert "corrupt.mp4" in refused(capsys, artifact, videos["dir"] / "corrupt.mp4")
    assert "truncated.mp4" in refused(capsys, artifact, videos["dir"] / "truncated.mp4")
    assert "does not exist" in refused(capsys, artifact, videos["dir"] / "missing.mp4")


def test_bad_options_are_refused_in_one_line(capsys, artifact, videos, cpu_artifact):
    assert "token rate 3 is not one of this artifact's rates: 1, 2, 4" in \
        refused(capsys, artifact, videos["av"], "--rate", "3")
    assert "nothing to read" in refused(capsys, artifact, videos["av"], "--no-audio",
                                        "--video-off")
    assert "VIDEO" in refused(capsys, artifact)
    assert "--greedy takes no lexicon or grammar" in refused(
        capsys, artifact, videos["av"], "--greedy", "--lexicon", videos["dir"] / "words.txt")
    assert "--greedy takes no lexicon or grammar" in refused(
        capsys, artifact, videos["av"], "--greedy", "--grammar", videos["dir"] / "grammar.json")
    msg = refused(capsys, artifact, videos["av"], "--grammar", videos["dir"] / "notjson.json")
    assert "notjson.json" in msg and "is not JSON" in msg
    msg = refused(capsys, artifact, videos["av"], "--grammar", videos["dir"] / "noforms.json")
    assert "non-empty list 'forms'" in msg and "accepted:" in msg
    for bad in ("empty.txt", "digits.txt"):
        msg = refused(capsys, artifact, videos["av"], "--lexicon", videos["dir"] / bad)
        assert bad in msg and "no usable word" in msg
    assert "not a lip-reader artifact" in refused(capsys, cpu_artifact.path, videos["av"])


def test_a_lexicon_file_replaces_the_artifacts(capsys, artifact, videos):
    r = as_json(capsys, artifact, videos["av"], "--lexicon", videos["dir"] / "words.txt")
    assert all(w["word"] in {"bin", "blue", "green", "now"} for w in r["words"])
    free = as_json(capsys, artifact, videos["av"], "--no-lexicon")
    assert free["text"]


def test_a_grammar_file_replaces_the_artifacts(capsys, artifact, videos):
    from avedge.runtime.decoding.grammar import Grammar

    g = Grammar.from_file(videos["dir"] / "grammar.json")
    r = as_json(capsys, artifact, videos["av"], "--grammar", videos["dir"] / "grammar.json")
    assert r["constraint"] == "grammar" and g.accepts(r["text"].split()), r["text"]
    default = as_json(capsys, artifact, videos["av"])
    assert default["constraint"] == "grammar" and not g.accepts(default["text"].split())


def test_default_artifact_without_weights_names_them(tmp_path):
    from avedge.runtime.errors import AvedgeError

    from avedge.cli.common import default_artifact

    with pytest.raises(AvedgeError, match=r"no lipreader weights at .*nothing\.safetensors.*"
                                          r"avedge train lipreader.*--artifact"):
        default_artifact("lipreader", "cpu", str(tmp_path / "nothing.safetensors"))
