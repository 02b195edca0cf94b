"""Artifacts whose graphs contain avedge ops load in a fresh process on every path:
the runtime registers the kernels itself (the user imports nothing)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch


class EulerStep(torch.nn.Module):
    """One guided Euler step through the fused op."""

    def forward(self, x, v_c, v_u):  # (1, 8, 12) each
        from avedge.cpp_kernels import ops

        return ops.flow_step(x, v_c, 0.125, v_u=v_u, guidance=2.0)


@pytest.fixture(scope="module")
def gpu_artifact(tmp_path_factory):
    import avedge.cpp_kernels as kernels
    from avedge.targets import get_target

    kernels.ensure_loaded()
    ex = tuple(torch.randn(1, 8, 12, generator=torch.Generator().manual_seed(i)) for i in range(3))
    art = get_target("gpu").export(EulerStep(), ex, tmp_path_factory.mktemp("ops") / "gpu")
    return art, ex


def test_manifest_names_the_custom_ops(gpu_artifact):
    art, _ = gpu_artifact
    assert art.manifest["custom_ops"] == ["avedge::flow_step"]


def test_pt2_with_custom_ops_runs_in_a_fresh_process(gpu_artifact, tmp_path):
    art, ex = gpu_artifact
    x, v_c, v_u = (t.numpy() for t in ex)
    want = x + 0.125 * (v_u + 2.0 * (v_c - v_u))
    for name, arr in (("x", x), ("v_c", v_c), ("v_u", v_u), ("want", want)):
        np.save(tmp_path / f"{name}.npy", arr)
    code = textwrap.dedent(f"""
        import numpy as np
        from avedge.runtime import load
        d = {str(tmp_path)!r}
        sess = load({str(art.path)!r}, backend="torch")
        out = sess.run(x=np.load(d + "/x.npy"), v_c=np.load(d + "/v_c.npy"),
                       v_u=np.load(d + "/v_u.npy"))["output"]
        np.testing.assert_allclose(out, np.load(d + "/want.npy"), atol=1e-5)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
