"""ONNX translations of the avedge ops into standard ONNX ops (opset 18).

onnxruntime's wheel has no headers for custom kernels, so each op is expressed with stock
ops, computing in float32 like the reference (reference.py)::

    torch.onnx.export(model, args, path, dynamo=True,
                      custom_translation_table=onnx_translation_table())

* joint_attention: per stream, MatMul for own-stream scores, MatMul + Where(|dpos| <= w)
  for cross scores (only the (Tq, To) cross mask exists), Concat, Softmax, Split, MatMuls.
* flow_step: Sub/Mul/Add.
* mouth_warp: Clip/Floor to the four taps, GatherElements on the flattened image, blend.
  (Not GridSample: its mode names changed between opsets 16 and 20.)

Shapes must be static (export without dynamic shapes), as for the ExecuTorch path.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import torch
from onnxscript import opset18 as op

FLOAT = ir.DataType.FLOAT.value
INT64 = ir.DataType.INT64.value


def _const(value, dtype=np.float32):
    return op.Constant(value=ir.tensor(np.asarray(value, dtype=dtype)))


def _to_float(x):
    return op.Cast(x, to=FLOAT)


def _back(x, like):
    return op.Cast(x, to=like.dtype.value)


def _slice(x, start: int, end: int, axis: int):
    i64 = np.int64
    return op.Slice(x, _const([start], i64), _const([end], i64), _const([axis], i64))


def _static_dim(value, axis: int, what: str) -> int:
    dim = value.shape[axis] if value.shape is not None else None
    if not isinstance(dim, int):
        raise TypeError(f"ONNX export of {what} needs static shapes; {value.name} has shape {value.shape}")
    return dim


# ---------------------------------------------------------------- joint_attention

def _attend(q, k_self, v_self, k_other, v_other, cross, scale, t_self, t_other):
    # q, k_self, v_self: (B, H, Tq, D); k_other, v_other: (B, H, To, D); cross: (Tq, To) bool.
    perm = [0, 1, 3, 2]
    s_self = op.Mul(op.MatMul(q, op.Transpose(k_self, perm=perm)), scale)  # (B, H, Tq, Tq)
    s_cross = op.Mul(op.MatMul(q, op.Transpose(k_other, perm=perm)), scale)  # (B, H, Tq, To)
    s_cross = op.Where(cross, s_cross, _const(-np.inf))
    p = op.Softmax(op.Concat(s_self, s_cross, axis=-1), axis=-1)
    p_self = _slice(p, 0, t_self, -1)  # (B, H, Tq, Tq)
    p_cross = _slice(p, t_self, t_self + t_other, -1)  # (B, H, Tq, To)
    return op.Add(op.MatMul(p_self, v_self), op.MatMul(p_cross, v_other))


def joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale=None):
    ta = _static_dim(q_a, 2, "avedge::joint_attention")
    tm = _static_dim(q_m, 2, "avedge::joint_attention")
    d = _static_dim(q_a, 3, "avedge::joint_attention")
    scale = _const(1.0 / math.sqrt(d) if scale is None else scale)
    qa, ka, va, qm, km, vm = (_to_float(t) for t in (q_a, k_a, v_a, q_m, k_m, v_m))
    pa = op.Unsqueeze(_to_float(pos_a), _const([1], np.int64))  # (Ta, 1)
    pm = op.Unsqueeze(_to_float(pos_m), _const([0], np.int64))  # (1, Tm)
    cross_am = op.LessOrEqual(op.Abs(op.Sub(pa, pm)), _const(window))  # (Ta, Tm)
    cross_ma = op.Transpose(cross_am, perm=[1, 0])
    out_a = _attend(qa, ka, va, km, vm, cross_am, scale, ta, tm)
    out_m = _attend(qm, km, vm, ka, va, cross_ma, scale, tm, ta)
    return _back(out_a, q_a), _back(out_m, q_m)


# ---------------------------------------------------------------- flow_step

def flow_step(x, v_c, v_u, x_pred, dt, guidance=1.0):
    g = _to_float(v_c)
    if v_u is not None:
        u = _to_float(v_u)
        g = op.Add(u, op.Mul(_const(guidance), op.Sub(g, u)))
    out = op.Add(_to_float(x), op.Mul(_const(dt), g))
    if x_pred is not None:
        out = op.Mul(_const(0.5), op.Add(out, _to_float(x_pred)))
    return _back(out, x)


# ---------------------------------------------------------------- mouth_warp

def mouth_warp(image, flow):
    b = _static_dim(image, 0, "avedge::mouth_warp")
    c = _static_dim(image, 1, "avedge::mouth_warp")
    h = _static_dim(image, 2, "avedge::mouth_warp")
    w = _static_dim(image, 3, "avedge::mouth_warp")
    img = op.Reshape(_to_float(image), _const([b, c, h * w], np.int64))  # (B, C, HW)
    fl = _to_float(flow)
    fx, fy = _slice(fl, 0, 1, 1), _slice(fl, 1, 2, 1)  # (B, 1, H, W) each
    xs = _const(np.arange(w, dtype=np.float32).reshape(1, 1, 1, w))
    ys = _const(np.arange(h, dtype=np.float32).reshape(1, 1, h, 1))
    sx = op.Clip(op.Add(xs, fx), _const(0.0), _const(float(w - 1)))
    sy = op.Clip(op.Add(ys, fy), _const(0.0), _const(float(h - 1)))
    x0f, y0f = op.Floor(sx), op.Floor(sy)
    wx, wy = op.Sub(sx, x0f), op.Sub(sy, y0f)
    x0, y0 = op.Cast(x0f, to=INT64), op.Cast(y0f, to=INT64)
    x1 = op.Min(op.Add(x0, _const(1, np.int64)), _const(w - 1, np.int64))
    y1 = op.Min(op.Add(y0, _const(1, np.int64)), _const(h - 1, np.int64))
    gather_shape = _const([b, c, h * w], np.int64)
    out_shape = _const([b, c, h, w], np.int64)

    def tap(yy, xx):
        idx = op.Reshape(op.Add(op.Mul(yy, _const(w, np.int64)), xx), _const([b, 1, h * w], np.int64))
        return op.Reshape(op.GatherElements(img, op.Expand(idx, gather_shape), axis=2), out_shape)

    one = _const(1.0)
    top = op.Add(op.Mul(op.Sub(one, wx), tap(y0, x0)), op.Mul(wx, tap(y0, x1)))
    bottom = op.Add(op.Mul(op.Sub(one, wx), tap(y1, x0)), op.Mul(wx, tap(y1, x1)))
    out = op.Add(op.Mul(op.Sub(one, wy), top), op.Mul(wy, bottom))
    return _back(out, image)


def onnx_translation_table() -> dict:
    """``custom_translation_table`` for torch.onnx.export(dynamo=True) covering the avedge ops."""
    from . import ops

    ops.ensure_loaded()
    avedge = torch.ops.avedge
    return {
        avedge.joint_attention.default: joint_attention,
        avedge.flow_step.default: flow_step,
        avedge.mouth_warp.default: mouth_warp,
    }
