"""Fixtures for the avedge kernel tests: the ops are registered (and compiled) once."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

# Tolerances vs the float32 reference. Low-precision outputs are compared after both sides
# round to the same dtype, so they may differ by about one unit in the last place.
TOL = {
    torch.float32: {"atol": 2e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
    torch.bfloat16: {"atol": 1.6e-2, "rtol": 1.6e-2},
}
DTYPES = list(TOL)


@pytest.fixture(scope="session")
def ck():
    from avedge import cpp_kernels

    backend = cpp_kernels.ensure_loaded()
    if os.environ.get("AVEDGE_KERNELS", "").lower() == "reference":
        assert backend == "reference"
    elif shutil.which("c++") or shutil.which("g++"):
        # With a compiler the C++ kernels must be what is under test, not the fallback.
        assert backend == "cpp", "a C++ compiler exists but the kernels did not build"
    return cpp_kernels


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    torch.testing.assert_close(actual, expected, **TOL[expected.dtype])
