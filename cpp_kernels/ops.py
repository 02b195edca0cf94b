"""The avedge op namespace: schemas, fake impls, and the CPU kernels (C++ or reference).

Importing this module registers ``torch.ops.avedge.{joint_attention, flow_step, mouth_warp}``
(functional and ``.out`` overloads). The CPU kernels come from the C++ library compiled on
first import (see _build.py); with no compiler, or with ``AVEDGE_KERNELS=reference``, the
reference implementations (reference.py) are registered instead and a warning says so.

Schemas::

    joint_attention(Tensor q_a, Tensor k_a, Tensor v_a, Tensor q_m, Tensor k_m, Tensor v_m,
                    Tensor pos_a, Tensor pos_m, float window, float? scale=None) -> (Tensor, Tensor)
    flow_step(Tensor x, Tensor v_c, Tensor? v_u, Tensor? x_pred, float dt, float guidance=1.0)
        -> Tensor
    mouth_warp(Tensor image, Tensor flow) -> Tensor
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

import torch
from torch import Tensor

from . import _build, reference

NAMESPACE = "avedge"
BACKEND_ENV = "AVEDGE_KERNELS"  # "reference" forces the pure-PyTorch kernels
_JA_ARGS = ("Tensor q_a, Tensor k_a, Tensor v_a, Tensor q_m, Tensor k_m, Tensor v_m, "
            "Tensor pos_a, Tensor pos_m, float window, float? scale=None")
_FS_ARGS = "Tensor x, Tensor v_c, Tensor? v_u, Tensor? x_pred, float dt, float guidance=1.0"
_MW_ARGS = "Tensor image, Tensor flow"
SCHEMAS = [
    f"joint_attention({_JA_ARGS}) -> (Tensor, Tensor)",
    (f"joint_attention.out({_JA_ARGS}, *, Tensor(a!) out_a, Tensor(b!) out_m)"
     " -> (Tensor(a!), Tensor(b!))"),
    f"flow_step({_FS_ARGS}) -> Tensor",
    f"flow_step.out({_FS_ARGS}, *, Tensor(a!) out) -> Tensor(a!)",
    f"mouth_warp({_MW_ARGS}) -> Tensor",
    f"mouth_warp.out({_MW_ARGS}, *, Tensor(a!) out) -> Tensor(a!)",
]
OP_NAMES = [f"{NAMESPACE}::joint_attention", f"{NAMESPACE}::flow_step", f"{NAMESPACE}::mouth_warp"]

_lib = torch.library.Library(NAMESPACE, "DEF")
for _schema in SCHEMAS:
    _lib.define(_schema)

_lock = threading.Lock()
_backend: str | None = None
_handle: ctypes.CDLL | None = None  # keeps the C++ library loaded
_cuda: str | None = None  # "cuda" once the CUDA kernels are registered, else "reference"


# ---------------------------------------------------------------- fake (meta) implementations

@torch.library.register_fake(f"{NAMESPACE}::joint_attention")
def _joint_attention_fake(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None):
    torch._check(q_a.dim() == 4 and q_m.dim() == 4, lambda: "q_a, q_m must be (B, H, T, D)")
    return torch.empty_like(q_a, memory_format=torch.contiguous_format), torch.empty_like(
        q_m, memory_format=torch.contiguous_format)


@torch.library.register_fake(f"{NAMESPACE}::flow_step")
def _flow_step_fake(x, v_c, v_u, x_pred, dt, guidance=1.0):
    torch._check(v_c.shape == x.shape, lambda: "v_c must have x's shape")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake(f"{NAMESPACE}::mouth_warp")
def _mouth_warp_fake(image, flow):
    torch._check(image.dim() == 4, lambda: "image must be (B, C, H, W)")
    return torch.empty_like(image, memory_format=torch.contiguous_format)


def _resize_out(out: Tensor, like: Tensor) -> Tensor:
    if out.shape != like.shape:
        out.resize_(like.shape)
    return out


def _ja_out_meta(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None, *, out_a, out_m):
    return _resize_out(out_a, q_a), _resize_out(out_m, q_m)


def _fs_out_meta(x, v_c, v_u, x_pred, dt, guidance=1.0, *, out):
    return _resize_out(out, x)


def _mw_out_meta(image, flow, *, out):
    return _resize_out(out, image)


_lib.impl("joint_attention.out", _ja_out_meta, "Meta")
_lib.impl("flow_step.out", _fs_out_meta, "Meta")
_lib.impl("mouth_warp.out", _mw_out_meta, "Meta")


# ---------------------------------------------------------------- reference kernels

def _ja_out_ref(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None, *, out_a, out_m):
    ra, rm = reference.joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale)
    _resize_out(out_a, ra).copy_(ra)
    _resize_out(out_m, rm).copy_(rm)
    return out_a, out_m


def _fs_out_ref(x, v_c, v_u, x_pred, dt, guidance=1.0, *, out):
    r = reference.flow_step(x, v_c, v_u, x_pred, dt, guidance)
    return _resize_out(out, r).copy_(r)


def _mw_out_ref(image, flow, *, out):
    r = reference.mouth_warp(image, flow)
    return _resize_out(out, r).copy_(r)


def _register_reference(dispatch_key: str) -> None:
    _lib.impl("joint_attention", reference.joint_attention, dispatch_key)
    _lib.impl("joint_attention.out", _ja_out_ref, dispatch_key)
    _lib.impl("flow_step", reference.flow_step, dispatch_key)
    _lib.impl("flow_step.out", _fs_out_ref, dispatch_key)
    _lib.impl("mouth_warp", reference.mouth_warp, dispatch_key)
    _lib.impl("mouth_warp.out", _mw_out_ref, dispatch_key)


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
