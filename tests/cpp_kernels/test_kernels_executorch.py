"""A model using the avedge ops lowers to .pte (XNNPACK for the rest) and runs in the pip
ExecuTorch runtime once load_executorch_ops() has registered the kernels."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from kernel_model import KernelBlock, example_inputs

pytest.importorskip("executorch")
from avedge.cpp_kernels import _build

pytestmark = pytest.mark.skipif(_build.find_compiler() is None,
                                reason="no C++ compiler: the ExecuTorch kernels cannot be built")


@pytest.fixture(scope="module")
def pte(ck, tmp_path_factory):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = KernelBlock().eval()
    ep = torch.export.export(model, example_inputs())
    program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    targets = {str(n.target) for n in program.exported_program().graph.nodes}
    path = tmp_path_factory.mktemp("pte") / "kernels.pte"
    path.write_bytes(program.buffer)
    return model, path, targets


def test_ops_stay_outside_the_delegate(pte):
    _, _, targets = pte
    for op in ("avedge.joint_attention.out", "avedge.flow_step.out", "avedge.mouth_warp.out"):
        assert any(op in t for t in targets), (op, targets)
    assert any("executorch_call_delegate" in t for t in targets)  # the linears went to XNNPACK


def test_pte_runs_and_matches_eager(ck, pte):
    from executorch.runtime import Runtime

    model, path, _ = pte
    lib = ck.load_executorch_ops()
    assert ck.load_executorch_ops() == lib  # idempotent
    method = Runtime.get().load_program(str(path)).load_method("forward")
    for seed in (0, 1):  # two calls: the loaded method is reusable
        inputs = example_inputs(seed)
        got = method.execute(list(inputs))
        with torch.no_grad():
            want = model(*inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_pte_without_kernels_reports_missing_operator(ck, pte):
    """Proves the library is what makes it run: a fresh process without it fails to load."""
    _, path, _ = pte
    code = ("from executorch.runtime import Runtime\n"
            f"Runtime.get().load_program({str(path)!r}).load_method('forward')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode != 0
    assert "avedge::" in run.stdout + run.stderr and "Missing operator" in run.stdout + run.stderr
