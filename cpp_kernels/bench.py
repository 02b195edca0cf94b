"""Benchmark the avedge kernels against the PyTorch formulations they replace.

    python -m avedge.cpp_kernels.bench [--json] [--rounds N] [--threads N] [--device cpu|cuda]

Same process, same inputs, interleaved rounds (ours, baseline, ours, ...) so that load from
other users of a shared machine hits both sides alike; reports medians and ratios. Sizes are
the kiosk lip-sync model's (batch 1, 4 heads, head dim 32, 200 audio + 100 motion tokens,
window +-8 motion frames; 8-step sampler with CFG; 256x256 warp).

JSON: one entry per comparison with ``ours_ms``, ``baseline_ms``, ``speedup``
(baseline / ours) and what the baseline is; plus ``machine``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import ops, sampler

# Kiosk sizes (lip-sync stage 2 and the one-step renderer).
B, HEADS, HEAD_DIM = 1, 4, 32
AUDIO_TOKENS, MOTION_TOKENS = 200, 100  # 50 Hz audio, 25 fps motion, 4 s
AUDIO_HZ, MOTION_HZ = 50.0, 25.0
WINDOW = 8.0  # +-8 motion frames
SAMPLER_STEPS, GUIDANCE = 8, 2.0
POSE_SHAPE = (1, MOTION_TOKENS, 12)  # lips-pose trajectory (12 dims at 25 fps) being sampled
WARP_SHAPE = (1, 3, 256, 256)
ROUNDS, CALLS_PER_ROUND, WARMUP = 15, 20, 10


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def compare(ours: Callable, baseline: Callable, device: str = "cpu", rounds: int = ROUNDS) -> dict:
    """Median ms per call of each, measured in interleaved rounds."""
    for _ in range(WARMUP):
        ours()
        baseline()
    _sync(device)
    times = {"ours": [], "baseline": []}
    for _ in range(rounds):
        for name, fn in (("ours", ours), ("baseline", baseline)):
            t0 = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / CALLS_PER_ROUND * 1e3)
    ours_ms = statistics.median(times["ours"])
    base_ms = statistics.median(times["baseline"])
    return {"ours_ms": round(ours_ms, 4), "baseline_ms": round(base_ms, 4),
            "speedup": round(base_ms / ours_ms, 2)}


# ---------------------------------------------------------------- baselines

def naive_joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window):
    """Concatenate the streams, build the (Ta+Tm)^2 mask, masked softmax attention."""
    ta = q_a.shape[2]
    q, k, v = torch.cat([q_a, q_m], 2), torch.cat([k_a, k_m], 2), torch.cat([v_a, v_m], 2)
    pos = torch.cat([pos_a, pos_m])
    stream = torch.cat([torch.zeros(ta, dtype=torch.bool, device=q.device),
                        torch.ones(q_m.shape[2], dtype=torch.bool, device=q.device)])
    mask = (stream[:, None] == stream[None, :]) | ((pos[:, None] - pos[None, :]).abs() <= window)
    s = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    out = torch.matmul(p, v)
    return out[:, :, :ta], out[:, :, ta:]


def joint_mask(pos_a, pos_m, window):
    ta, tm = pos_a.shape[0], pos_m.shape[0]
    pos = torch.cat([pos_a, pos_m])
    stream = torch.cat([torch.zeros(ta, dtype=torch.bool), torch.ones(tm, dtype=torch.bool)])
    stream = stream.to(pos.device)
    return (stream[:, None] == stream[None, :]) | ((pos[:, None] - pos[None, :]).abs() <= window)


def grid_sample_warp(image, flow):
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype, device=image.device),
                            torch.arange(w, dtype=image.dtype, device=image.device), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0]) * (2 / (w - 1)) - 1, (ys + flow[:, 1]) * (2 / (h - 1)) - 1], -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ---------------------------------------------------------------- benchmarks

def bench_joint_attention(device: str, rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(B, HEADS, AUDIO_TOKENS, HEAD_DIM, generator=g).to(device) for _ in range(3)]
    m = [torch.randn(B, HEADS, MOTION_TOKENS, HEAD_DIM, generator=g).to(device) for _ in range(3)]
    pos_a = ops.positions(AUDIO_TOKENS, AUDIO_HZ, MOTION_HZ).to(device)
    pos_m = ops.positions(MOTION_TOKENS, MOTION_HZ, MOTION_HZ).to(device)
    args = (*a, *m, pos_a, pos_m, WINDOW)

    def ours():
        return torch.ops.avedge.joint_attention(*args, None)

    q, k, v = (torch.cat(p, 2) for p in ((a[0], m[0]), (a[1], m[1]), (a[2], m[2])))
    mask = joint_mask(pos_a, pos_m, WINDOW)  # precomputed: the strictest SDPA baseline

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    got = ours()[0]
    want = naive_joint_attention(*args)[0]
    assert torch.allclose(got, want, atol=1e-4), "joint_attention disagrees with the baseline"
    size = f"B={B} H={HEADS} D={HEAD_DIM} Ta={AUDIO_TOKENS} Tm={MOTION_TOKENS} window=+-{WINDOW:g}"
    return {
        "joint_attention": {**compare(ours, lambda: naive_joint_attention(*args), device, rounds),
                            "baseline": "concat + build mask + masked softmax (eager)", "size": size},
        "joint_attention_vs_sdpa": {**compare(ours, sdpa, device, rounds),
                                    "baseline": "scaled_dot_product_attention, precomputed bool mask",
                                    "size": size},
    }


def bench_flow_step(device: str, rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(*POSE_SHAPE, generator=g).to(device)
    # Velocities of the model (cond, uncond): precomputed, so the comparison is the sampler
    # arithmetic the op fuses; a real network adds the same cost to both sides.
    v = torch.randn(2, *POSE_SHAPE, generator=g).to(device)
    v_c, v_u = v[0], v[1]

    def velocity(x, t):
        return v_c, v_u

    def run(fused):
        return lambda: sampler.sample(velocity, x0, SAMPLER_STEPS, "heun", GUIDANCE, fused=fused)

    assert torch.allclose(run(True)(), run(False)(), atol=1e-5)
    out = {"flow_step": {**compare(run(True), run(False), device, rounds),
                         "baseline": f"eager {SAMPLER_STEPS}-step Heun + CFG loop (same arithmetic)",
                         "size": f"x={tuple(POSE_SHAPE)} steps={SAMPLER_STEPS} heun cfg"}}

    def euler(fused):
        return lambda: sampler.sample(velocity, x0, SAMPLER_STEPS, "euler", GUIDANCE, fused=fused)

    out["flow_step_euler"] = {**compare(euler(True), euler(False), device, rounds),
                              "baseline": f"eager {SAMPLER_STEPS}-step Euler + CFG loop",
                              "size": f"x={tuple(POSE_SHAPE)} steps={SAMPLER_STEPS} euler cfg"}
    return out


def bench_mouth_warp(device: str, rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(*WARP_SHAPE, generator=g).to(device)
    flow = (torch.randn(WARP_SHAPE[0], 2, *WARP_SHAPE[2:], generator=g) * 3).to(device)
    assert torch.allclose(ops.mouth_warp(image, flow), grid_sample_warp(image, flow), atol=1e-4)
    return {"mouth_warp": {**compare(lambda: torch.ops.avedge.mouth_warp(image, flow),
                                     lambda: grid_sample_warp(image, flow), device, rounds),
                           "baseline": "grid from flow + grid_sample(border, align_corners)",
                           "size": f"image={WARP_SHAPE}"}}


def machine(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "kernels": ops.backend(), "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run(device: str = "cpu", rounds: int = ROUNDS) -> dict:
    ops.ensure_loaded()
    results = {}
    results.update(bench_joint_attention(device, rounds))
    results.update(bench_flow_step(device, rounds))
    results.update(bench_mouth_warp(device, rounds))
    results["machine"] = machine(device)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avedge.cpp_kernels.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved timing rounds")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is steadier on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to torch")
    results = run(args.device, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print(f"{'op':26s} {'ours ms':>9s} {'base ms':>9s} {'speedup':>8s}  baseline")
    for name, r in results.items():
        if name != "machine":
            print(f"{name:26s} {r['ours_ms']:9.4f} {r['baseline_ms']:9.4f} {r['speedup']:7.2f}x  {r['baseline']}")


if __name__ == "__main__":
    main()
