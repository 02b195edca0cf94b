"""The avedge op namespace: schemas, fake impls, and the CPU kernels (C++ or reference).

Importing this module registers ``torch.ops.avedge.{joint_attention, flow_step, mouth_warp}``
(functional and ``.out`` overloads). The CPU kernels come from the C++ library compiled on
first import (see _build.py); with no compiler, or with ``AVEDGE_KERNELS=reference``, the
reference implementations (reference.py) are registered instead and a warning says so.

The schemas come from the op table in schemas.py (one entry per kernel); each kernel here
has a fake impl (`@_fake`), a reference (reference.py, same name) and a Python entry point.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

import torch
from torch import Tensor

from . import _build, reference
from .schemas import KERNELS, NAMESPACE, SCHEMAS

BACKEND_ENV = "AVEDGE_KERNELS"  # "reference" forces the pure-PyTorch kernels
_lib = torch.library.Library(NAMESPACE, "DEF")
for _schema in SCHEMAS:
    _lib.define(_schema)

_lock = threading.Lock()
_backend: str | None = None
_handle: ctypes.CDLL | None = None  # keeps the C++ library loaded
_cuda: str | None = None  # "cuda" once the CUDA kernels are registered, else "reference"


# ---------------------------------------------------------------- fake (meta) implementations

_FAKES: dict = {}  # op name -> its fake impl, which also gives the .out overload's shapes


def _fake(name: str):
    def register(fn):
        _FAKES[name] = fn
        return torch.library.register_fake(f"{NAMESPACE}::{name}")(fn)
    return register


@_fake("joint_attention")
def _joint_attention_fake(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None):
    torch._check(q_a.dim() == 4 and q_m.dim() == 4, lambda: "q_a, q_m must be (B, H, T, D)")
    return torch.empty_like(q_a, memory_format=torch.contiguous_format), torch.empty_like(
        q_m, memory_format=torch.contiguous_format)


@_fake("flow_step")
def _flow_step_fake(x, v_c, v_u, x_pred, dt, guidance=1.0):
    torch._check(v_c.shape == x.shape, lambda: "v_c must have x's shape")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@_fake("mouth_warp")
def _mouth_warp_fake(image, flow):
    torch._check(image.dim() == 4, lambda: "image must be (B, C, H, W)")
    return torch.empty_like(image, memory_format=torch.contiguous_format)


def _resize_out(out: Tensor, like: Tensor) -> Tensor:
    if out.shape != like.shape:
        out.resize_(like.shape)
    return out


def _out_variant(functional, outs: tuple[str, ...]):
    """The `.out` overload of `functional`: its results written into the out tensors named
    `outs` (keyword arguments, as the schema declares them), which it returns."""
    def out_impl(*args, **kwargs):
        targets = [kwargs.pop(name) for name in outs]
        result = functional(*args, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        written = tuple(_resize_out(t, r).copy_(r) for t, r in zip(targets, results))
        return written if len(written) > 1 else written[0]
    return out_impl


for _name, _kernel in KERNELS.items():
    _lib.impl(f"{_name}.out", _out_variant(_FAKES[_name], _kernel.outs), "Meta")


# ---------------------------------------------------------------- reference kernels

def _register_reference(dispatch_key: str) -> None:
    for name, kernel in KERNELS.items():
        functional = getattr(reference, name)
        _lib.impl(name, functional, dispatch_key)
        _lib.impl(f"{name}.out", _out_variant(functional, kernel.outs), dispatch_key)


# Any device without a dedicated kernel (CUDA before the CUDA extension is built) computes
# through the reference; CPU gets the C++ kernels below, which take precedence.
_register_reference("CompositeExplicitAutograd")


def ensure_loaded() -> str:
    """Register the avedge ops and their CPU kernels (idempotent).

    Returns the CPU backend in use: ``"cpp"`` (compiled kernels) or ``"reference"``.
    """
    global _backend, _handle
    with _lock:
        if _backend is not None:
            return _backend
        if os.environ.get(BACKEND_ENV, "").lower() == "reference":
            _register_reference("CPU")
            _backend = "reference"
            return _backend
        try:
            path = _build.build(("torch",))["torch"]
            # RTLD_GLOBAL is not needed: the library only registers kernels with the dispatcher.
            _handle = ctypes.CDLL(str(path))
            _backend = "cpp"
        except (FileNotFoundError, _build.BuildError, OSError) as err:
            warnings.warn(
                f"avedge.cpp_kernels: C++ kernels unavailable ({err}); using the PyTorch "
                "reference implementations (correct, slower).", RuntimeWarning, stacklevel=2)
            _register_reference("CPU")
            _backend = "reference"
    if torch.cuda.is_available():  # GPU machine: CUDA kernels too (built once, then cached)
        ensure_cuda_loaded()
    return _backend


def ensure_cuda_loaded() -> str:
    """Register the CUDA kernels (building them on first use); idempotent.

    Returns "cuda", or "reference" (with a warning) when they cannot be built: CUDA tensors
    then run through the reference implementations.
    """
    global _cuda
    with _lock:
        if _cuda is None:
            try:
                _build.build_cuda()
                _cuda = "cuda"
            except Exception as err:  # noqa: BLE001 -- any build failure degrades to reference
                warnings.warn(f"avedge.cpp_kernels: CUDA kernels unavailable ({err}); CUDA tensors "
                              "use the reference implementations.", RuntimeWarning, stacklevel=2)
                _cuda = "reference"
        return _cuda


def backend() -> str:
    """The CPU backend in use ("cpp" or "reference"), loading the kernels if needed."""
    return ensure_loaded()


ensure_loaded()


# ---------------------------------------------------------------- Python entry points

def joint_attention(q_a: Tensor, k_a: Tensor, v_a: Tensor, q_m: Tensor, k_m: Tensor, v_m: Tensor,
                    pos_a: Tensor, pos_m: Tensor, window: float,
                    scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Joint attention of an audio and a motion token stream.

    q/k/v_a: (B, H, Ta, D); q/k/v_m: (B, H, Tm, D); pos_a: (Ta,), pos_m: (Tm,) aligned times
    on one clock (see ``positions``). Each query attends to its whole own stream plus the
    other stream's tokens with |pos_q - pos_k| <= window, in one softmax; scale defaults to
    1/sqrt(D). Returns (out_a (B, H, Ta, D), out_m (B, H, Tm, D)).
    """
    return torch.ops.avedge.joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m,
                                            float(window), scale)


def flow_step(x: Tensor, v_c: Tensor, dt: float, v_u: Tensor | None = None,
              guidance: float = 1.0, x_pred: Tensor | None = None) -> Tensor:
    """One fused flow-matching ODE update (see sampler.py for Euler/Heun/midpoint loops).

    g = v_c, or with v_u (unconditional velocity) g = v_u + guidance * (v_c - v_u);
    returns x + dt * g, or with x_pred (Heun corrector) (x + x_pred + dt * g) / 2.
    """
    return torch.ops.avedge.flow_step(x, v_c, v_u, x_pred, float(dt), float(guidance))


def mouth_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp: image (B, C, H, W) sampled at (x + flow[:,0], y + flow[:,1]).

    Displacements are in pixels; samples beyond the image are clamped to its border.
    """
    return torch.ops.avedge.mouth_warp(image, flow)


def positions(n: int, rate_hz: float, clock_hz: float = 25.0) -> Tensor:
    """(n,) float32 aligned positions of a stream at rate_hz, in ticks of a clock_hz clock.

    E.g. 50 Hz audio tokens on the 25 fps motion clock: 0, 0.5, 1, ... A clock whose ticks
    are exact binary fractions of every stream's step keeps the window test exact.
    """
    return torch.arange(n, dtype=torch.float32) * (clock_hz / rate_hz)
