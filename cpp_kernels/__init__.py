"""avedge.cpp_kernels: custom ops for the runtime's hot paths, with CPU C++, ExecuTorch,
ONNX and CUDA implementations. Uses nothing else from avedge.

Ops (namespace ``avedge``, functional + ``.out`` overloads, fake impls, reference impls):

* ``joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None)`` --
  audio/motion joint attention: full self attention within each stream plus local cross
  attention (|pos_q - pos_k| <= window on a common clock), one softmax per query.
* ``flow_step(x, v_c, dt, v_u=None, guidance=1.0, x_pred=None)`` -- fused flow-matching
  ODE update with optional classifier-free guidance (Euler, Heun, midpoint: see sampler.py).
* ``mouth_warp(image, flow)`` -- bilinear backward warp by a pixel displacement field,
  border-clamped.

Interfaces for the other layers:

* ``ensure_loaded() -> str`` registers the torch ops (compiling the C++ kernels into
  ~/.cache/avedge/kernels on first use; "reference" fallback with a warning when there is no
  compiler). Importing ``avedge.cpp_kernels.ops`` does the same.
* ``ensure_cuda_loaded() -> str`` builds/registers the CUDA kernels on a machine with a GPU
  ("cuda", or "reference" with a warning); without it CUDA tensors use the reference.
* ``load_executorch_ops() -> str`` builds and loads the ExecuTorch kernel library (call it
  before ``Runtime.get().load_program`` when a manifest lists ``custom_ops``).
* ``onnx_translation_table() -> dict`` for ``torch.onnx.export(..., dynamo=True,
  custom_translation_table=...)``: each op becomes standard ONNX ops (opset 18+).
* ``CUSTOM_OPS`` -- the op names to list in an artifact manifest.

Example::

    import torch
    from avedge import cpp_kernels as ck

    ck.ensure_loaded()
    q = torch.randn(1, 4, 200, 32); m = torch.randn(1, 4, 100, 32)
    out_a, out_m = ck.joint_attention(q, q, q, m, m, m,
                                      ck.positions(200, 50.0), ck.positions(100, 25.0), 8.0)
"""

from __future__ import annotations

from .executorch_ops import load_executorch_ops
from .schemas import KERNELS, OP_NAMES

CUSTOM_OPS = OP_NAMES  # one per kernel of the op table (schemas.py)

# Everything that needs torch is imported on first use, so that a device running only
# ExecuTorch/ONNX artifacts can call load_executorch_ops() without the training stack.
_LAZY = {
    **dict.fromkeys(KERNELS, "ops"), "positions": "ops", "ensure_loaded": "ops",
    "ensure_cuda_loaded": "ops", "backend": "ops", "reference": None, "sampler": None,
    "onnx_translation_table": "onnx_export",
}

__all__ = ["CUSTOM_OPS", "load_executorch_ops", *_LAZY.keys()]  # noqa: PLE0604


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'avedge.cpp_kernels' has no attribute {name!r}")
    import importlib

    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
