"""CUDA kernels: nvcc compile check (sm_87, sm_90) wherever nvcc exists; build and
equivalence with the reference on a machine with a GPU (marked gpu, skipped without one)."""

from __future__ import annotations

import atexit
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from avedge.cpp_kernels import _build

NVCC = _build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (no CUDA toolkit)")

# The compile check takes ~1 min of nvcc (torch headers); it starts when this module is
# collected so that it overlaps the other tests, and the test below waits for it.
_CHECK_DIR = Path(tempfile.mkdtemp(prefix="avedge-nvcc-"))
_CHECKS = [] if NVCC is None else [
    (cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for cmd in _build.nvcc_check_commands(NVCC, _CHECK_DIR)]
atexit.register(lambda: [proc.kill() for _, proc in _CHECKS if proc.poll() is None])


@needs_nvcc
def test_cuda_sources_compile_for_orin_and_hopper():
    for cmd, proc in _CHECKS:
        log, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{log[-4000:]}"
    assert (_CHECK_DIR / "kernels.o").stat().st_size > 0
    assert (_CHECK_DIR / "binding.o").stat().st_size > 0


@pytest.fixture(scope="module")
def cuda_ck(ck):
    assert ck.ensure_cuda_loaded() == "cuda", "CUDA kernels failed to build on a GPU machine"
    return ck


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("ta", "tm", "window"), [(200, 100, 8.0), (1, 1, 0.0), (37, 19, 1e6), (16, 8, 0.0)])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_joint_attention_cuda_matches_reference(cuda_ck, dtype, ta, tm, window):
    from conftest import TOL

    g = torch.Generator().manual_seed(0)
    a = [torch.randn(1, 4, ta, 32, generator=g) for _ in range(3)]
    m = [torch.randn(1, 4, tm, 32, generator=g) for _ in range(3)]
    pos_a, pos_m = cuda_ck.positions(ta, 50.0), cuda_ck.positions(tm, 25.0)
    want = cuda_ck.reference.joint_attention(*a, *m, pos_a, pos_m, window)
    dev = [t.to("cuda", dtype) for t in (*a, *m)]
    got = cuda_ck.joint_attention(*dev, pos_a.cuda(), pos_m.cuda(), window)
    for gt, w in zip(got, want):
        torch.testing.assert_close(gt.float().cpu(), w, **{k: 4 * v for k, v in TOL[dtype].items()})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_flow_step_and_warp_cuda_match_reference(cuda_ck, dtype):
    from conftest import assert_close

    x, v_c, v_u, x_p = (torch.randn(2, 100, 64).to(dtype) for _ in range(4))
    got = cuda_ck.flow_step(x.cuda(), v_c.cuda(), 0.1, v_u=v_u.cuda(), guidance=2.0, x_pred=x_p.cuda())
    assert_close(got.cpu(), cuda_ck.reference.flow_step(x, v_c, v_u, x_p, 0.1, 2.0))
    image, flow = torch.randn(1, 3, 64, 48).to(dtype), (torch.randn(1, 2, 64, 48) * 5).to(dtype)
    assert_close(cuda_ck.mouth_warp(image.cuda(), flow.cuda()).cpu(), cuda_ck.reference.mouth_warp(image, flow))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_cuda_kernels_are_registered_not_reference(cuda_ck):
    # The CUDA key must dispatch to the compiled kernel, not the CompositeExplicitAutograd
    # reference (which would also give right answers).
    assert torch._C._dispatch_has_kernel_for_dispatch_key("avedge::joint_attention", "CUDA")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("avedge::flow_step", "CUDA")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("avedge::mouth_warp", "CUDA")
