"""The command line as a user meets it: subprocesses, exit codes, no tracebacks."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

AVEDGE = [sys.executable, "-m", "avedge"]

USER_MODEL = textwrap.dedent('''
    import torch

    class Smoother(torch.nn.Module):
        """A user's streaming model: one-pole smoother, state = last output sample."""
        def forward(self, chunk, last):           # (1, 64), (1, 1)
            outs = []
            for t in range(chunk.shape[-1]):
                last = 0.5 * last + 0.5 * chunk[:, t:t + 1]
                outs.append(last)
            return torch.cat(outs, dim=-1), last

    def factory():
        return Smoother(), (torch.zeros(1, 64), torch.zeros(1, 1))
''')


def _run(args, cwd=None):
    return subprocess.run(AVEDGE + args, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)


@pytest.fixture(scope="module")
def user_artifact(tmp_path_factory):
    work = tmp_path_factory.mktemp("user")
    (work / "mypkg").mkdir()
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "smoother.py").write_text(USER_MODEL)
    r = _run(["export", "mypkg.smoother:factory", "--target", "cpu", "--out", "art"], cwd=work)
    assert r.returncode == 0, r.stderr
    return work / "art"


@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_user_factory_exports_and_benches(user_artifact, backend):
    r = _run(["bench", str(user_artifact), "--backend", backend, "--runs", "20", "--json"])
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["backend"] == backend and data["runs"] == 20
    assert 0 < data["median_ms"] <= data["p90_ms"]


def test_user_streaming_model_streams_like_the_whole_input(user_artifact):
    import numpy as np
    from avedge.runtime import load

    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    want, last = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        last = 0.5 * last + 0.5 * v
        want[i] = last
    stream = load(user_artifact, backend="executorch").stream()
    stream.accept(x[:333])
    got = [stream.read()]
    stream.accept(x[333:])
    got += [stream.read(), stream.finish()]
    np.testing.assert_allclose(np.concatenate(got, -1)[0], want, atol=1e-5)


def test_flipped_byte_is_a_clear_refusal(user_artifact, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(user_artifact, art)
    data = bytearray((art / "model.pte").read_bytes())
    data[200] ^= 1
    (art / "model.pte").write_bytes(bytes(data))
    r = _run(["bench", str(art), "--backend", "executorch", "--json"])
    assert r.returncode != 0
    assert "model.pte" in r.stderr and "sha256" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,expected", [
    (["export", "no-such-model", "--target", "cpu", "--out", "x"], "available: "),
    (["export", "tiny-stream", "--target", "moon", "--out", "x"], "jetson-orin"),
    (["export", "tiny-stream", "--target", "cpu", "--recipe", "int3", "--out", "x"], "fp32"),
    (["export", "nomod.x:factory", "--target", "cpu", "--out", "x"], "cannot import"),
    (["info", "/nonexistent/artifact"], "not a directory"),
])
def test_user_errors_exit_nonzero_without_traceback(args, expected, tmp_path):
    r = _run(args, cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr and "Traceback" not in r.stderr


def test_info_and_bench_in_process(cpu_artifact, capsys):
    from avedge.cli import main

    assert main(["info", str(cpu_artifact.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] is True and info["stream"]["chunk_samples"] == 128
    assert main(["bench", str(cpu_artifact.path), "--runs", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "executorch"


@pytest.mark.minutes
def test_demo_runs(tmp_path, capsys):
    from avedge.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--runs", "5"]) == 0
    out = capsys.readouterr().out
    assert "executorch" in out and "onnxruntime" in out and "median_ms" in out
    assert (tmp_path / "demo" / "tiny-stream-cpu" / "manifest.json").exists()
    # speech extraction: the mean SI-SDRi over 6 synthetic and 6 real-voice mixtures
    rows = {line.split("  ")[0]: line.split() for line in out.splitlines()
            if line.startswith(("synthetic, held-out voices", "real recorded voices"))}
    assert set(rows) == {"synthetic, held-out voices", "real recorded voices"}, out
    assert all(r[3] == "6" for r in rows.values())  # mixtures per set (after the 3-word name)
    assert "not scored" not in out  # make setup installs the real voices' packages
    assert all((tmp_path / "demo" / "speech-extraction" / f"{n}.wav").exists()
               for n in ("mixture", "enrollment", "reference", "extracted"))
    # the lip-sync step wrote its video and read it back
    from avedge.runtime.video_io import read_video

    video = read_video(tmp_path / "demo" / "lip-sync" / "talking.mp4")
    assert len(video.frames) > 10 and video.frames.shape[1:] == (256, 256, 3)
    assert "round trip, the lip reader on the generated video" in out


def test_npu_targets_export_the_npu_fitted_weights_when_they_ship(tmp_path):
    import dataclasses

    from avedge.models.registry import get_family
    from avedge.targets import get_target

    from avedge.api import resolve_weights

    fitted, plain = tmp_path / "fitted.safetensors", tmp_path / "plain.safetensors"
    fam = get_family("speech-extractor")
    fam = dataclasses.replace(fam, weights={**fam.weights, "npu": fitted, "mask": plain})
    npu, cpu = get_target("hearable-npu"), get_target("hearable")
    assert resolve_weights(fam, npu, None) is None  # neither shipped: the default
    plain.write_bytes(b"")  # the plain mask: what the NPU form runs, not the deep filter
    assert resolve_weights(fam, npu, None) == str(plain)
    fitted.write_bytes(b"")
    assert resolve_weights(fam, npu, None) == str(fitted)
    assert resolve_weights(fam, cpu, None) is None  # not an NPU
    assert resolve_weights(fam, npu, str(plain)) == str(plain)  # the user's file wins


def test_npu_precision_is_checked_before_the_model_is_built(capsys):
    from avedge.cli import main

    assert main(["export", "speech-extractor", "--target", "hearable-npu", "--out", "x",
                 "--npu-precision", "int3"]) != 0
    assert "accepted: a16w8, a8w4, a8w8, a8w8-log16" in capsys.readouterr().err
    assert main(["export", "speech-extractor", "--target", "hearable", "--out", "x",
                 "--npu-precision", "a16w8"]) != 0
    assert "has no NPU" in capsys.readouterr().err


def test_train_refuses_an_option_its_family_does_not_take(tmp_path, capsys):
    from avedge.cli import main

    assert main(["train", "speech-extractor", "--corpus", str(tmp_path), "--mlp-width", "64",
                 "--out", str(tmp_path / "w.safetensors")]) != 0
    assert "--mlp-width does not apply to training 'speech-extractor'" in capsys.readouterr().err


def test_npu_fine_tuning_refuses_dims(tmp_path, capsys):
    from avedge.cli import main

    assert main(["train", "speech-extractor-npu", "--corpus", str(tmp_path), "--dims",
                 '{"d_model": 64}', "--out", str(tmp_path / "w.safetensors")]) != 0
    assert "--dims does not apply to training 'speech-extractor-npu'" in capsys.readouterr().err


def test_train_dims_must_be_a_json_object_of_known_names(tmp_path, capsys):
    from avedge.cli import main

    out = str(tmp_path / "w.safetensors")
    for dims, said in (("df_order=4", "wants a JSON object"),
                       ('{"dff": 4}', "unknown dimension(s) dff; accepted: d_hidden"),
                       ('{"df_order": 0}', "df_order must be >= 1")):
        assert main(["train", "speech-extractor", "--dims", dims, "--out", out,
                     "--corpus", str(tmp_path / "no-bank"), "--no-progress"]) != 0
        assert said in capsys.readouterr().err


def test_train_refuses_zero_workers_before_reading_the_corpus(tmp_path, capsys):
    from avedge.cli import main

    assert main(["train", "speech-extractor", "--workers", "0", "--corpus",
                 str(tmp_path / "no-bank"), "--out", str(tmp_path / "w.safetensors"),
                 "--no-progress"]) != 0
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_targets_family_lists_what_each_target_holds(capsys):
    from avedge.cli import main

    assert main(["targets", "--family", "tiny-stream"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["hearable"][1:5] == ["tiny-stream", "int8-static", "target", "hearable"]
    assert rows["cpu"][1:5] == ["tiny-stream", "fp32", "target", "cpu"]
    assert main(["targets", "--family", "tiny-stream", "--recipe", "fp16", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert {c["recipe_source"] for p in plans for c in p["components"]} == {"user"}
    assert main(["targets", "--family", "nope"]) != 0
    assert "unknown model family 'nope'" in capsys.readouterr().err



def test_a_reader_that_goes_away_stops_the_output_quietly(monkeypatch, capsys):
    # `avedge ... | head`: the pipe closes early; no traceback, the shell's exit code 141.
    import io
    import sys

    from avedge.cli import main

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["targets", "--json"]) == 141
