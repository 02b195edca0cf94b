"""Flow-matching ODE samplers (Euler, Heun, midpoint) with classifier-free guidance.

``velocity(x, t)`` returns the velocity (B, ...) or, for guidance, a pair
``(v_cond, v_uncond)`` (e.g. the two halves of one doubled-batch model call: views, no copy).
With ``fused=True`` every update is one ``avedge::flow_step`` kernel; ``fused=False`` is the
same arithmetic as eager PyTorch ops (the benchmark baseline).

How each method maps onto flow_step (g = guided velocity):

* euler:    x <- x + dt * g(x, t)
* heun:     x_p = x + dt * g(x, t);  x <- (x + x_p + dt * g(x_p, t + dt)) / 2
* midpoint: x_h = x + dt/2 * g(x, t);  x <- x + dt * g(x_h, t + dt/2)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import ops

METHODS = ("euler", "heun", "midpoint")
Velocity = Callable[[Tensor, float], "Tensor | tuple[Tensor, Tensor]"]


def _split(v) -> tuple[Tensor, Tensor | None]:
    if isinstance(v, tuple | list):
        if len(v) != 2:
            raise ValueError(f"velocity must return a tensor or (v_cond, v_uncond), got {len(v)} items")
        return v[0], v[1]
    return v, None


def eager_update(x: Tensor, v_c: Tensor, v_u: Tensor | None, x_pred: Tensor | None, dt: float,
                 guidance: float) -> Tensor:
    """flow_step written as plain PyTorch ops, as a model's sampling loop usually is."""
    g = v_c if v_u is None else v_u + guidance * (v_c - v_u)
    if x_pred is None:
        return x + dt * g
    return 0.5 * (x + x_pred + dt * g)


def _fused_update(x, v_c, v_u, x_pred, dt, guidance):
    return torch.ops.avedge.flow_step(x, v_c, v_u, x_pred, dt, guidance)


def sample(velocity: Velocity, x0: Tensor, steps: int = 8, method: str = "euler",
           guidance: float = 1.0, t0: float = 0.0, t1: float = 1.0, fused: bool = True) -> Tensor:
    """Integrate dx/dt = velocity(x, t) from t0 to t1 in `steps` uniform steps; returns x(t1)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ops.ensure_loaded()
    update = _fused_update if fused else eager_update
    dt = (t1 - t0) / steps
    x = x0
    for i in range(steps):
        t = t0 + i * dt
        v_c, v_u = _split(velocity(x, t))
        if method == "euler":
            x = update(x, v_c, v_u, None, dt, guidance)
        elif method == "heun":
            x_p = update(x, v_c, v_u, None, dt, guidance)
            v_c2, v_u2 = _split(velocity(x_p, t + dt))
            x = update(x, v_c2, v_u2, x_p, dt, guidance)
        else:  # midpoint
            x_h = update(x, v_c, v_u, None, 0.5 * dt, guidance)
            v_c2, v_u2 = _split(velocity(x_h, t + 0.5 * dt))
            x = update(x, v_c2, v_u2, None, dt, guidance)
    return x
