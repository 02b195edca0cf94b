"""Damaged manifests are refused with an ArtifactError before a native runtime sees a byte.

One real cpu artifact of tiny-stream (conftest's `cpu_artifact`) is copied once per test;
hypothesis then rewrites its manifest.json: truncated, keys removed or renamed, values of
the wrong type, absurd shapes, disallowed dtypes, file names that leave the folder, wrong
hashes. `load`, `avedge info` and `avedge bench` must each refuse every one, the CLI with
one line on stderr and a non-zero exit.
"""

import copy
import json
import shutil
import subprocess
import sys

import pytest
from avedge.runtime import load
from avedge.runtime.backends.executorch_backend import ExecutorchBackend
from avedge.runtime.backends.onnxruntime_backend import _OrtBackend
from avedge.runtime.errors import ArtifactError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avedge.cli import main

FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
# Containers whose keys are data, not schema (any name is accepted there).
LOOSE = ("budgets", "versions", "extra", "quantization", "recipe_configs", "metric",
         "token_rates", "parity", "files", "npu_estimate", "tosa_check", "cortex_m")
REQUIRED = [("format_version",), ("kind",), ("family",), ("target",), ("backends",),
            ("recipe",), ("files",), ("inputs",), ("outputs",), ("inputs", 0, "name"),
            ("inputs", 0, "shape"), ("inputs", 0, "dtype"), ("inputs", 0, "time_axis"),
            ("outputs", 0, "time_axis"), ("outputs", 1, "shape"),
            ("files", "model.pte", "sha256"), ("files", "model.onnx", "bytes"),
            ("files", "init_state.npz", "format"), ("stream", "input"),
            ("stream", "output"), ("stream", "chunk_samples"), ("stream", "state", 0, "input"),
            ("parity", "onnx", "rel_err"), ("memory_plan", "activation_arena_bytes")]
ESCAPING = ["../x", "/etc/passwd", "a/../../x", "sub/../../etc/passwd", "..", ".", "",
            "./model.onnx", "model.onnx/../../x", "..\\x", "~/x", ".hidden", "a//b",
            "a/b/c/d/e", "x" * 300, "nul\0", "C:\\x"]


@pytest.fixture
def art(cpu_artifact, tmp_path, monkeypatch):
    """A private copy of the artifact whose native runtimes fail the test if reached."""
    def reached(*args, **kwargs):
        pytest.fail("a native runtime was handed a damaged artifact")

    monkeypatch.setattr(ExecutorchBackend, "__init__", reached)
    monkeypatch.setattr(_OrtBackend, "__init__", reached)
    dst = tmp_path / "art"
    shutil.copytree(cpu_artifact.path, dst)
    return dst


def original(art) -> dict:
    return json.loads((art / "manifest.json.orig").read_text()) if (
        art / "manifest.json.orig").exists() else _keep(art)


def _keep(art) -> dict:
    text = (art / "manifest.json").read_text()
    (art / "manifest.json.orig").write_text(text)
    return json.loads(text)


def refused_everywhere(art, capsys, needle: str | None = None) -> None:
    with pytest.raises(ArtifactError) as err:
        load(art)
    assert "\n" not in str(err.value)
    if needle is not None:
        assert needle in str(err.value)
    for cmd in (["info", str(art)], ["bench", str(art), "--runs", "1", "--warmup", "0"]):
        capsys.readouterr()
        assert main(cmd) == 2, cmd
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"avedge {cmd[0]}: error: "), lines


def write(art, manifest) -> None:
    (art / "manifest.json").write_text(json.dumps(manifest))


def paths(node, prefix=()):
    """Every key path into the manifest that the schema names (not inside LOOSE data)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            if not (len(prefix) == 0 and k in LOOSE):
                yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def at(tree, path):
    for p in path[:-1]:
        tree = tree[p]
    return tree, path[-1]


@FUZZ
@given(cut=st.floats(0, 0.999))
def test_truncated_manifest(art, capsys, cut):
    text = json.dumps(original(art))
    (art / "manifest.json").write_text(text[: int(len(text) * cut)])
    refused_everywhere(art, capsys, "not valid JSON")


@FUZZ
@given(data=st.data())
def test_missing_required_key(art, capsys, data):
    m = copy.deepcopy(original(art))
    path = data.draw(st.sampled_from(REQUIRED))
    parent, key = at(m, path)
    del parent[key]
    write(art, m)
    refused_everywhere(art, capsys)


@FUZZ
@given(data=st.data(), suffix=st.sampled_from(["x", "_", "S", " "]))
def test_renamed_key(art, capsys, data, suffix):
    m = copy.deepcopy(original(art))
    keyed = [p for p in paths(m) if isinstance(p[-1], str)]
    path = data.draw(st.sampled_from(keyed))
    parent, key = at(m, path)
    parent[key + suffix] = parent.pop(key)
    write(art, m)
    refused_everywhere(art, capsys, key)  # named as unknown, or its old name as missing


def wrong_type(value):
    """JSON values no field of `value`'s type accepts (ints are not floats' wrong type)."""
    if isinstance(value, bool):
        return st.sampled_from([1, "true", [True]])
    if isinstance(value, (int, float)):
        return st.sampled_from(["1", [value], {"v": value}])
    if isinstance(value, str):
        return st.sampled_from([7, [value], {"s": value}])
    if isinstance(value, list):
        return st.sampled_from(["[]", 3, {"l": value}])
    if isinstance(value, dict):
        return st.sampled_from([[value], "{}", 5])
    return st.sampled_from([[[]], "x"])  # null: no nullable field takes these


@FUZZ
@given(data=st.data())
def test_wrong_type(art, capsys, data):
    m = copy.deepcopy(original(art))
    path = data.draw(st.sampled_from(list(paths(m))))
    parent, key = at(m, path)
    if path[0] in LOOSE and len(path) == 1 and parent[key] is None:
        return  # e.g. metric null: a loose object there is valid
    parent[key] = data.draw(wrong_type(parent[key]))
    write(art, m)
    refused_everywhere(art, capsys)


@pytest.mark.parametrize("kind", [["model"], {"model": 1}, 3, None])
def test_unhashable_or_odd_kind(art, capsys, kind):
    """Found by test_wrong_type: a list as "kind" raised TypeError, not ArtifactError."""
    m = copy.deepcopy(original(art))
    m["kind"] = kind
    write(art, m)
    refused_everywhere(art, capsys)


absurd_shapes = st.one_of(
    st.lists(st.integers(-(2**40), -1), min_size=1, max_size=3),
    st.tuples(st.integers(2**31 + 1, 2**62)).map(list),
    st.lists(st.integers(2**16 + 1, 2**20), min_size=2, max_size=4),
    st.lists(st.just(1), min_size=17, max_size=40),
    st.lists(st.sampled_from([1.5, "3", True, None, [2]]), min_size=1, max_size=3),
)


@FUZZ
@given(data=st.data(), shape=absurd_shapes)
def test_absurd_shape(art, capsys, data, shape):
    m = copy.deepcopy(original(art))
    spec = data.draw(st.sampled_from(m["inputs"] + m["outputs"]))
    spec["shape"] = shape
    write(art, m)
    refused_everywhere(art, capsys, "shape")


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(["float128", "object", "", "str", "complex64",
                                              "<f4", "float32 "]))
def test_disallowed_dtype(art, capsys, data, dtype):
    m = copy.deepcopy(original(art))
    data.draw(st.sampled_from(m["inputs"] + m["outputs"]))["dtype"] = dtype
    write(art, m)
    refused_everywhere(art, capsys, "dtype")


@FUZZ
@given(name=st.sampled_from(ESCAPING), rename=st.booleans())
def test_file_names_that_leave_the_folder(art, capsys, name, rename):
    m = copy.deepcopy(original(art))
    if rename:  # the model file itself listed under the escaping name
        m["files"][name] = m["files"].pop("model.onnx")
    else:  # an extra file no backend reads: still refused
        m["files"][name] = dict(m["files"]["model.onnx"])
    write(art, m)
    refused_everywhere(art, capsys, "files")


@FUZZ
@given(which=st.sampled_from(["model.pte", "model.onnx", "init_state.npz"]),
       field=st.sampled_from(["sha256", "bytes"]), data=st.data())
def test_mismatched_hash_or_size(art, capsys, which, field, data):
    m = copy.deepcopy(original(art))
    rec = m["files"][which]
    if field == "sha256":
        rec["sha256"] = data.draw(st.text("0123456789abcdef", min_size=64, max_size=64).filter(
            lambda h: h != rec["sha256"]))
    else:
        rec["bytes"] = data.draw(st.integers(0, 2**40).filter(lambda n: n != rec["bytes"]))
    write(art, m)
    # load reads the default backend's files only (the .pte and the initial state); info
    # checks every file, and bench loads like load.
    if which != "model.onnx":
        with pytest.raises(ArtifactError, match=which.replace(".", r"\.")):
            load(art)
    with pytest.raises(ArtifactError, match=which.replace(".", r"\.")):
        load(art, backend="onnxruntime") if which != "model.pte" else load(art)
    capsys.readouterr()
    assert main(["info", str(art)]) == 2
    assert which in capsys.readouterr().err


def test_a_symlink_out_of_the_folder_is_refused(art, capsys, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(art / "model.onnx", outside)
    (art / "model.onnx").unlink()
    (art / "model.onnx").symlink_to(outside)  # same bytes, same hash: only the place is wrong
    refused_everywhere(art, capsys, "leads outside the artifact folder")


def test_format_version_1_asks_for_a_re_export(art, capsys):
    write(art, {**original(art), "format_version": 1})
    refused_everywhere(art, capsys, "re-export")


@pytest.mark.parametrize("comp_dir", ["../tiny", "/tmp", "tiny/..", "..", ".tiny"])
def test_pipeline_component_dirs_stay_inside(cpu_artifact, tmp_path, capsys, comp_dir,
                                             monkeypatch):
    from avedge.runtime.manifest import PipelineManifest, file_record, write_manifest

    pipe = tmp_path / "pipe"
    shutil.copytree(cpu_artifact.path, pipe / "tiny")
    good = PipelineManifest.new(
        family="tiny", target="cpu", backends=["executorch", "onnxruntime"], recipe="fp32",
        components={"tiny": {"dir": "tiny", "recipe": "fp32", "recipe_source": "user"}},
        files={"tiny/manifest.json": file_record(pipe / "tiny" / "manifest.json", "manifest")})
    write_manifest(pipe, good)
    assert load(pipe, backend="onnxruntime")["tiny"].backend == "onnxruntime"  # the control
    monkeypatch.setattr(_OrtBackend, "__init__", lambda *a: pytest.fail("runtime reached"))
    monkeypatch.setattr(ExecutorchBackend, "__init__", lambda *a: pytest.fail("runtime reached"))
    m = good.to_json()
    m["components"]["tiny"]["dir"] = comp_dir
    m["files"] = {f"{comp_dir}/manifest.json": m["files"]["tiny/manifest.json"]}
    write(pipe, m)
    refused_everywhere(pipe, capsys)


def test_cli_refusal_is_one_line_without_traceback(art):
    """Through `python -m avedge`, as a user runs it."""
    text = json.dumps(original(art))
    (art / "manifest.json").write_text(text[: len(text) // 2])
    for cmd in (["info", str(art)], ["bench", str(art), "--runs", "1"]):
        r = subprocess.run([sys.executable, "-m", "avedge", *cmd], capture_output=True,
                           text=True, check=False, timeout=120)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert "not valid JSON" in r.stderr


def test_writers_go_through_the_same_schema(cpu_artifact):
    from avedge.runtime.manifest import ModelManifest, validate

    m = json.loads((cpu_artifact.path / "manifest.json").read_text())
    assert validate(m).to_json() == m  # what export wrote is what a reader reads back
    with pytest.raises(ArtifactError, match=r"key 'bogus' is not a key of this format"):
        ModelManifest.new(**{**m, "bogus": 1})
    with pytest.raises(ArtifactError, match=r"key 'inputs\[0\]\.time_axis' is 7 for shape"):
        bad = copy.deepcopy(m)
        bad["inputs"][0]["time_axis"] = 7
        ModelManifest.new(**bad)
