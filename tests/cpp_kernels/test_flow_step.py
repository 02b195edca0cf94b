"""avedge::flow_step and the samplers built on it: opcheck, equivalence, CFG identities,
sampler accuracy on an ODE with a known solution, errors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import DTYPES, assert_close

SHAPE = (2, 37, 24)  # (B, T, C): odd sizes so no loop divides evenly


def make(dtype=torch.float32, shape=SHAPE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).to(dtype) for _ in range(4)]  # x, v_c, v_u, x_pred


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_vu", [False, True])
@pytest.mark.parametrize("use_xp", [False, True])
def test_matches_reference(ck, dtype, use_vu, use_xp):
    x, v_c, v_u, x_pred = make(dtype)
    v_u = v_u if use_vu else None
    x_pred = x_pred if use_xp else None
    out = ck.flow_step(x, v_c, 0.125, v_u=v_u, guidance=2.5, x_pred=x_pred)
    assert_close(out, ck.reference.flow_step(x, v_c, v_u, x_pred, 0.125, 2.5))


def test_large_tensor_uses_threads_and_matches(ck):
    x, v_c, v_u, _ = make(shape=(3, 300, 257))  # > one parallel grain
    out = ck.flow_step(x, v_c, -0.3, v_u=v_u, guidance=4.0)
    assert_close(out, v_u.mul(-3.0).add(v_c, alpha=4.0).mul(-0.3).add(x))


def test_guidance_identities(ck):
    x, v_c, v_u, _ = make()
    plain = ck.flow_step(x, v_c, 0.1)
    torch.testing.assert_close(ck.flow_step(x, v_c, 0.1, v_u=v_u, guidance=1.0), plain)
    torch.testing.assert_close(ck.flow_step(x, v_c, 0.1, v_u=v_u, guidance=0.0), ck.flow_step(x, v_u, 0.1))
    torch.testing.assert_close(plain, x + 0.1 * v_c)


def test_heun_corrector_equals_average_of_slopes(ck):
    x, v1, v2, _ = make()
    dt = 0.2
    x_pred = ck.flow_step(x, v1, dt)
    out = ck.flow_step(x, v2, dt, x_pred=x_pred)
    torch.testing.assert_close(out, x + dt * 0.5 * (v1 + v2), atol=1e-6, rtol=1e-6)


def test_non_contiguous_inputs(ck):
    x, v_c, v_u, x_pred = (t.transpose(1, 2) for t in make())
    assert not x.is_contiguous()
    out = ck.flow_step(x, v_c, 0.3, v_u=v_u, guidance=3.0, x_pred=x_pred)
    assert out.shape == x.shape
    assert_close(out, ck.reference.flow_step(x, v_c, v_u, x_pred, 0.3, 3.0))


def test_cfg_halves_of_a_doubled_batch(ck):
    """The usual CFG call: one model run on a doubled batch; its halves are views."""
    x = torch.randn(1, 10, 8)
    v = torch.randn(2, 10, 8)  # [cond, uncond]
    out = ck.flow_step(x, v[0:1], 0.5, v_u=v[1:2], guidance=2.0)
    assert_close(out, x + 0.5 * (v[1:2] + 2.0 * (v[0:1] - v[1:2])))


def test_out_variant(ck):
    x, v_c, v_u, _ = make()
    out = torch.empty(0)
    ret = torch.ops.avedge.flow_step.out(x, v_c, v_u, None, 0.1, 2.0, out=out)
    assert ret is out
    assert_close(out, ck.reference.flow_step(x, v_c, v_u, None, 0.1, 2.0))


def test_opcheck(ck):
    x, v_c, v_u, x_pred = make(shape=(2, 5, 3))
    torch.library.opcheck(torch.ops.avedge.flow_step.default, (x, v_c, v_u, x_pred, 0.1, 2.0))
    torch.library.opcheck(torch.ops.avedge.flow_step.default, (x, v_c, None, None, 0.1, 1.0))
    torch.library.opcheck(torch.ops.avedge.flow_step.out, (x, v_c, v_u, None, 0.1, 2.0),
                          {"out": torch.empty_like(x)}, test_utils=("test_schema", "test_faketensor"))


def test_bad_arguments_raise(ck):
    x, v_c, _, _ = make()
    with pytest.raises(ValueError, match="no broadcasting"):
        ck.flow_step(x, v_c[:, :1], 0.1)
    with pytest.raises(TypeError, match="has dtype"):
        ck.flow_step(x, v_c.half(), 0.1)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        ck.flow_step(x.long(), v_c.long(), 0.1)


# ---------------------------------------------------------------- samplers

def _linear_field(a: torch.Tensor, guided: bool):
    # dx/dt = -a * x (exact: x0 * exp(-a t)); with guidance the pair (v_c, v_u) combines to it.
    def velocity(x, t):
        v = -a * x
        return (v, 0.5 * v) if guided else v
    return velocity


@pytest.mark.parametrize("method", ["euler", "heun", "midpoint"])
@pytest.mark.parametrize("guided", [False, True])
def test_sampler_fused_equals_eager(ck, method, guided):
    a = torch.rand(1, 16, 8) + 0.5
    x0 = torch.randn(1, 16, 8)
    guidance = 1.0 if not guided else 3.0
    vel = _linear_field(a, guided)
    fused = ck.sampler.sample(vel, x0, steps=8, method=method, guidance=guidance)
    eager = ck.sampler.sample(vel, x0, steps=8, method=method, guidance=guidance, fused=False)
    torch.testing.assert_close(fused, eager, atol=1e-6, rtol=1e-6)


def test_second_order_methods_converge_faster(ck):
    a = torch.full((1, 4, 4), 2.0)
    x0 = torch.randn(1, 4, 4)
    exact = x0 * math.exp(-2.0)
    vel = _linear_field(a, guided=False)
    err = {m: (ck.sampler.sample(vel, x0, 8, m) - exact).abs().max().item()
           for m in ("euler", "heun", "midpoint")}
    assert err["heun"] < err["euler"] / 10 and err["midpoint"] < err["euler"] / 10, err
    # Halving the step: Euler error ~halves (order 1), Heun's ~quarters (order 2).
    e16 = (ck.sampler.sample(vel, x0, 16, "heun") - exact).abs().max().item()
    assert 3.0 < err["heun"] / e16 < 5.0


def test_sampler_rejects_unknown_method(ck):
    with pytest.raises(ValueError, match="available: euler, heun, midpoint"):
        ck.sampler.sample(lambda x, t: x, torch.zeros(1), method="rk4")
