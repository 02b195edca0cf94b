"""avedge::joint_attention: opcheck, equivalence with the reference and with independent
formulations (dense masked attention, unmasked SDPA), locality, edge cases, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DTYPES, TOL, assert_close

KIOSK = {"B": 1, "H": 4, "Ta": 200, "Tm": 100, "D": 32}


def make(B=1, H=2, Ta=20, Tm=10, D=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = [torch.randn(B, H, Ta, D, generator=g).to(dtype) for _ in range(3)]
    m = [torch.randn(B, H, Tm, D, generator=g).to(dtype) for _ in range(3)]
    pos_a = torch.arange(Ta, dtype=torch.float32) * 0.5  # 50 Hz audio on the 25 fps clock
    pos_m = torch.arange(Tm, dtype=torch.float32)
    return (*a, *m, pos_a, pos_m)


def dense(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window):
    """Independent formulation: concatenate the streams and build the full joint mask."""
    ta = q_a.shape[2]
    q, k, v = (torch.cat(p, dim=2).float() for p in ((q_a, q_m), (k_a, k_m), (v_a, v_m)))
    pos = torch.cat([pos_a, pos_m]).float()
    stream = torch.cat([torch.zeros(ta), torch.ones(q_m.shape[2])]).bool()
    mask = (stream[:, None] == stream[None, :]) | ((pos[:, None] - pos[None, :]).abs() <= window)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out[:, :, :ta], out[:, :, ta:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(ck, dtype):
    args = make(B=2, H=3, Ta=37, Tm=19, D=24, dtype=dtype)
    out = ck.joint_attention(*args, 2.0)
    ref = ck.reference.joint_attention(*args, 2.0)
    for o, r in zip(out, ref):
        assert o.shape == r.shape
        assert_close(o, r)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_close_to_fp32(ck, dtype):
    args32 = make(Ta=33, Tm=17)
    args_lp = [t.to(dtype) if i < 6 else t for i, t in enumerate(args32)]
    out = ck.joint_attention(*args_lp, 3.0)
    ref = ck.reference.joint_attention(*args32, 3.0)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o.float(), r, atol=4 * TOL[dtype]["atol"], rtol=4 * TOL[dtype]["rtol"])


def test_kiosk_size_matches_dense_mask(ck):
    args = make(**KIOSK)
    out = ck.joint_attention(*args, 8.0)
    for o, r in zip(out, dense(*args, 8.0)):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [0.0, 0.5, 1.0, 3.0])
def test_window_matches_dense_mask(ck, window):
    args = make(Ta=21, Tm=11)
    for o, r in zip(ck.joint_attention(*args, window), dense(*args, window)):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [1e4, math.inf])
def test_window_beyond_sequence_is_full_attention(ck, window):
    args = make(Ta=30, Tm=15)
    q_a, k_a, v_a, q_m, k_m, v_m = args[:6]
    k, v = torch.cat([k_a, k_m], 2), torch.cat([v_a, v_m], 2)
    full = F.scaled_dot_product_attention(torch.cat([q_a, q_m], 2), k, v)  # no mask at all
    out_a, out_m = ck.joint_attention(*args, window)
    torch.testing.assert_close(torch.cat([out_a, out_m], 2), full, atol=1e-5, rtol=1e-5)


def test_window_zero_sees_only_coinciding_tokens(ck):
    args = list(make(Ta=8, Tm=4))
    out_a, _ = ck.joint_attention(*args, 0.0)
    # Odd audio tokens (times 0.5, 1.5, ...) coincide with no motion token: pure self attention.
    self_only = F.scaled_dot_product_attention(args[0], args[1], args[2])
    torch.testing.assert_close(out_a[:, :, 1::2], self_only[:, :, 1::2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out_a[:, :, 0::2], self_only[:, :, 0::2], atol=1e-3)


def test_cross_attention_is_local(ck):
    """Changing a motion value outside an audio query's window leaves that query unchanged."""
    args = list(make(Ta=40, Tm=20))
    window = 2.0
    base_a, _ = ck.joint_attention(*args, window)
    v_m = args[5].clone()
    v_m[:, :, 15] += 10.0  # motion frame 15 (t=15): visible to audio tokens with |t - 15| <= 2
    args[5] = v_m
    new_a, _ = ck.joint_attention(*args, window)
    changed = (new_a - base_a).abs().amax(dim=(0, 1, 3)) > 1e-6  # (Ta,)
    expected = (args[6] - 15.0).abs() <= window
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("ta,tm", [(1, 1), (1, 9), (13, 1)])
def test_streams_of_length_one(ck, ta, tm):
    args = make(Ta=ta, Tm=tm)
    for o, r in zip(ck.joint_attention(*args, 1.0), dense(*args, 1.0)):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


def test_non_contiguous_inputs(ck):
    B, H, Ta, Tm, D = 2, 3, 17, 9, 16
    g = torch.Generator().manual_seed(1)
    # (B, T, H, D) projections viewed as (B, H, T, D): the usual non-contiguous layout.
    qkv_a = [torch.randn(B, Ta, H, D, generator=g).transpose(1, 2) for _ in range(3)]
    qkv_m = [torch.randn(B, Tm, H, D, generator=g).transpose(1, 2) for _ in range(3)]
    pos_a = (torch.arange(2 * Ta, dtype=torch.float32) * 0.25)[::2]  # strided positions
    pos_m = torch.arange(Tm, dtype=torch.float32) * 0.5
    assert not qkv_a[0].is_contiguous() and not pos_a.is_contiguous()
    args = (*qkv_a, *qkv_m, pos_a, pos_m)
    out = ck.joint_attention(*args, 1.0)
    ref = ck.reference.joint_attention(*[t.contiguous() for t in args], 1.0)
    for o, r in zip(out, ref):
        assert_close(o, r)


def test_unsorted_and_integer_positions(ck):
    args = list(make(Ta=24, Tm=12))
    perm_a, perm_m = torch.randperm(24), torch.randperm(12)
    args[6] = (torch.arange(24) // 2)[perm_a]  # int64 positions, shuffled
    args[7] = torch.arange(12)[perm_m]
    for o, r in zip(ck.joint_attention(*args, 1.0), dense(*args, 1.0)):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


def test_explicit_scale(ck):
    args = make()
    out = ck.joint_attention(*args, 2.0, scale=0.3)
    ref = ck.reference.joint_attention(*args, 2.0, 0.3)
    assert_close(out[0], ref[0])
    assert not torch.allclose(out[0], ck.joint_attention(*args, 2.0)[0])


def test_out_variant_writes_outputs(ck):
    args = make(Ta=12, Tm=6)
    out_a, out_m = torch.empty(0), torch.empty(0)
    ret = torch.ops.avedge.joint_attention.out(*args, 1.0, None, out_a=out_a, out_m=out_m)
    ref = ck.reference.joint_attention(*args, 1.0)
    assert ret[0] is out_a and ret[1] is out_m
    assert_close(out_a, ref[0])
    assert_close(out_m, ref[1])


def test_opcheck(ck):
    args = make(Ta=9, Tm=5, D=8)
    torch.library.opcheck(torch.ops.avedge.joint_attention.default, (*args, 1.0, None))
    outs = (torch.empty(1, 2, 9, 8), torch.empty(1, 2, 5, 8))
    torch.library.opcheck(torch.ops.avedge.joint_attention.out, (*args, 1.0, None),
                          {"out_a": outs[0], "out_m": outs[1]},
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize(
    "mutate,exc,match",
    [
        (lambda a: a.__setitem__(8, -1.0), ValueError, "window"),
        (lambda a: a.__setitem__(1, a[1][:, :, :5]), ValueError, "share one shape"),
        (lambda a: a.__setitem__(slice(3, 6), [t[:, :1] for t in a[3:6]]), ValueError, "must agree"),
        (lambda a: a.__setitem__(6, a[6][:3]), ValueError, "pos_a"),
        (lambda a: a.__setitem__(2, a[2].half()), TypeError, "has dtype"),
        (lambda a: a.__setitem__(0, a[0].double()), TypeError, "float32, float16 or bfloat16"),
        (lambda a: a.__setitem__(0, a[0][0]), ValueError, r"\(B, H, T, D\)"),
    ],
)
def test_bad_arguments_raise(ck, mutate, exc, match):
    args = list(make()) + [1.0]
    mutate(args)
    with pytest.raises(exc, match=match):
        torch.ops.avedge.joint_attention(*args)
