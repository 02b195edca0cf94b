"""Building and loading the kernel libraries: cache reuse, the no-compiler fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from avedge.cpp_kernels import _build

PROBE = textwrap.dedent("""
    import warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import torch
        from avedge import cpp_kernels as ck
        backend = ck.ensure_loaded()
    x = torch.randn(2, 3)
    y = ck.flow_step(x, torch.ones(2, 3), 0.5)
    assert torch.allclose(y, x + 0.5), "reference flow_step is wrong"
    print(backend, any("reference implementations" in str(w.message) for w in caught))
""")


def _probe(env: dict) -> list[str]:
    run = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, check=False,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.split()


def test_no_compiler_falls_back_to_reference_with_warning(tmp_path):
    # Empty cache + no compiler on PATH: nothing can be built, the ops must still work.
    backend, warned = _probe({"PATH": str(tmp_path), "CXX": "", "AVEDGE_KERNEL_CACHE": str(tmp_path)})
    assert backend == "reference"
    assert warned == "True"


def test_forced_reference_backend():
    assert _probe({"AVEDGE_KERNELS": "reference"}) == ["reference", "False"]


@pytest.mark.skipif(_build.find_compiler() is None, reason="no C++ compiler on this machine")
def test_build_is_cached_and_keyed_by_source():
    first = _build.build(("executorch",))["executorch"]
    mtime = first.stat().st_mtime_ns
    again = _build.build(("executorch",))["executorch"]
    assert again == first and again.stat().st_mtime_ns == mtime  # reused, not rebuilt
    cxx = _build.find_compiler()
    assert _build.cache_dir(cxx, _build.ET_SOURCE) != _build.cache_dir(cxx, _build.TORCH_SOURCE)
