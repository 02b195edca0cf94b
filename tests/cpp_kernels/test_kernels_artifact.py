"""Through the project's own export and runtime: the cpu target writes .pte + .onnx for a
model with avedge ops, lists them as custom_ops, and both backends run it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_model import KernelBlock, example_inputs

targets = pytest.importorskip("avedge.targets")
runtime = pytest.importorskip("avedge.runtime")


def test_cpu_target_artifact_runs_on_both_backends(ck, tmp_path):
    torch.manual_seed(0)
    model = KernelBlock().eval()
    art = targets.get_target("cpu").export(model, example_inputs(), tmp_path / "art")
    assert art.manifest["custom_ops"] == sorted(ck.CUSTOM_OPS)
    inputs = example_inputs(5)
    with torch.no_grad():
        want = [w.numpy() for w in model(*inputs)]
    for backend in ("executorch", "onnxruntime"):
        got = runtime.load(tmp_path / "art", backend=backend).run_ordered([x.numpy() for x in inputs])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4, err_msg=backend)
