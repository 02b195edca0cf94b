"""Timing one graph call: warm-up, then per-call wall times; median and p90."""

from __future__ import annotations

import time

import numpy as np


def example_arrays(session, seed: int = 0) -> list[np.ndarray]:
    """Inputs of the manifest's shapes: initial state for state inputs, noise elsewhere."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in session.inputs:
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        if spec["name"] in session.init_state:
            arrays.append(session.init_state[spec["name"]])
        elif dtype.kind == "f":
            arrays.append((rng.standard_normal(shape) * 0.1).astype(dtype))
        else:
            arrays.append(np.zeros(shape, dtype))
    return arrays


def bench_session(session, runs: int = 100, warmup: int = 10) -> dict:
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    arrays = example_arrays(session)
    for _ in range(warmup):
        session.run_ordered(arrays)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run_ordered(arrays)
        times[i] = (time.perf_counter() - t0) * 1e3
    return {
        "backend": session.backend,
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "min_ms": float(times.min()),
        "runs": runs,
    }
