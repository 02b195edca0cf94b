"""Backends side by side on the same artifact, in one process, interleaved rounds.

    python benchmarks/bench_backends.py [--model tiny-stream] [--runs 300] [--json]

For each recipe (fp32, int8, int8-static) it exports the model for `cpu`, then times one graph
call (one 8 ms chunk for a streaming model) on ExecuTorch+XNNPACK and onnxruntime,
with 1 thread (the hearable setting) and with the default threads. Rounds alternate
between backends so machine noise hits both alike; medians and ratios are reported.
It also measures what the Stream adds per chunk on top of the raw graph call.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

BACKENDS = ("executorch", "onnxruntime")


def time_calls(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def bench_artifact(path: Path, threads: int | None, runs: int, rounds: int = 5) -> dict:
    from avedge.runtime import load
    from avedge.runtime.bench import example_arrays

    sessions = {b: load(path, backend=b, threads=threads) for b in BACKENDS}
    arrays = example_arrays(sessions[BACKENDS[0]])
    times = {b: [] for b in BACKENDS}
    for _ in range(rounds):
        for b, s in sessions.items():
            time_calls(lambda s=s: s.run_ordered(arrays), 10)  # warm-up
            times[b].append(time_calls(lambda s=s: s.run_ordered(arrays), runs // rounds))
    result = {}
    for b in BACKENDS:
        t = np.concatenate(times[b])
        result[b] = {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}
    result["ratio_ort_over_et"] = result["onnxruntime"]["median_ms"] / result["executorch"]["median_ms"]
    return result


def stream_overhead(path: Path, runs: int) -> dict:
    """Median per-chunk wall time through Stream.accept/read vs the bare graph call."""
    from avedge.runtime import load
    from avedge.runtime.bench import example_arrays

    sess = load(path, backend="onnxruntime", threads=1)
    chunk = sess.manifest["stream"]["chunk_samples"]
    arrays = example_arrays(sess)
    bare = np.median(time_calls(lambda: sess.run_ordered(arrays), runs))
    stream = sess.stream()
    block = (np.random.default_rng(0).standard_normal(chunk) * 0.1).astype(np.float32)

    def one_chunk():
        stream.accept(block)
        stream.read()

    time_calls(one_chunk, 20)
    through = np.median(time_calls(one_chunk, runs))
    return {"bare_ms": float(bare), "stream_ms": float(through),
            "overhead_us": float((through - bare) * 1e3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-stream")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from avedge.api import export

    report = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "model": args.model, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ("fp32", "int8", "int8-static"):
            art = export(args.model, "cpu", Path(tmp) / recipe, recipe=recipe)
            for threads in (1, None):
                key = f"{recipe}/threads={threads or 'default'}"
                report["results"][key] = bench_artifact(art.path, threads, args.runs)
            if art.manifest.get("stream") and recipe == "fp32":
                report["stream"] = stream_overhead(art.path, args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.model}: one graph call, median (p90) ms")
    for key, r in report["results"].items():
        et, ort = r["executorch"], r["onnxruntime"]
        print(f"  {key:22s} executorch {et['median_ms']:.4f} ({et['p90_ms']:.4f})  "
              f"onnxruntime {ort['median_ms']:.4f} ({ort['p90_ms']:.4f})  "
              f"ort/et {r['ratio_ort_over_et']:.2f}")
    if "stream" in report:
        s = report["stream"]
        print(f"  Stream per chunk: {s['stream_ms']:.4f} ms vs bare call {s['bare_ms']:.4f} ms "
              f"(overhead {s['overhead_us']:.1f} us)")


if __name__ == "__main__":
    main()
