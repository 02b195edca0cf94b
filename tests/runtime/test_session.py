import shutil

import numpy as np
import pytest
from avedge.runtime import load
from avedge.runtime.backends import available_backends, backend_class
from avedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError


def _inputs(sess, seed=0):
    rng = np.random.default_rng(seed)
    return {s["name"]: (rng.standard_normal(s["shape"]) * 0.1).astype(s["dtype"])
            for s in sess.inputs}


@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_run_matches_eager(cpu_artifact, tiny_model, backend):
    import torch

    model, _ = tiny_model
    sess = load(cpu_artifact.path, backend=backend)
    feed = _inputs(sess)
    out = sess.run(**feed)
    ref = model(*(torch.from_numpy(feed[s["name"]]) for s in sess.inputs))
    assert list(out) == [s["name"] for s in sess.outputs]
    for got, want in zip(out.values(), ref):
        np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-5)


def test_default_backend_is_the_targets_first(cpu_artifact):
    assert load(cpu_artifact.path).backend == "executorch"


def test_wrong_inputs_name_what_is_expected(cpu_artifact):
    sess = load(cpu_artifact.path, backend="onnxruntime")
    feed = _inputs(sess)
    with pytest.raises(InputError, match=r"missing input\(s\) \['state_0'\].*chunk \(1, 128\)"):
        sess.run(**{k: v for k, v in feed.items() if k != "state_0"})
    with pytest.raises(InputError, match="unknown input"):
        sess.run(**feed, extra=np.zeros(1))
    with pytest.raises(InputError, match=r"has dtype float64; the artifact expects float32"):
        sess.run(**{**feed, "chunk": feed["chunk"].astype(np.float64)})
    with pytest.raises(InputError, match=r"has shape \(1, 64\); the artifact expects \(1, 128\)"):
        sess.run(**{**feed, "chunk": feed["chunk"][:, :64]})


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_file_is_refused_before_the_native_runtime(tmp_path, cpu_artifact, damage,
                                                            monkeypatch):
    art = tmp_path / "art"
    shutil.copytree(cpu_artifact.path, art)
    pte = art / "model.pte"
    data = bytearray(pte.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    pte.write_bytes(bytes(data))
    cls = backend_class("executorch")
    monkeypatch.setattr(cls, "_load", lambda *a: pytest.fail("native runtime was reached"))
    with pytest.raises(ArtifactError, match="model.pte"):
        load(art, backend="executorch")
    # Load hashes only what its backend reads: the .onnx is intact, so onnxruntime runs it;
    # `avedge info` checks the artifact whole.
    assert load(art, backend="onnxruntime").backend == "onnxruntime"
    from avedge.cli import main

    assert main(["info", str(art)]) == 2


def test_missing_or_broken_manifest(tmp_path, cpu_artifact):
    art = tmp_path / "art"
    shutil.copytree(cpu_artifact.path, art)
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(art)
    (art / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load(art)


def test_unavailable_backend_lists_available_ones(cpu_artifact, tmp_path, tiny_model):
    from avedge.targets import get_target

    if "torch-cuda" in available_backends():
        pytest.skip("a CUDA GPU is present; this checks the no-GPU refusal")
    model, example = tiny_model
    art = get_target("gpu").export(model, example, tmp_path / "gpu")
    with pytest.raises(BackendUnavailableError, match=r"torch-cuda.*available here.*torch"):
        load(art.path)
    with pytest.raises(ArtifactError, match=r"no \.pte file for backend 'executorch'"):
        load(art.path, backend="executorch")
