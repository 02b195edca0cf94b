"""Re-time a finished sweep's artifacts against eager fp32 PyTorch, in one process.

    python benchmarks/retime_sweep.py SWEEP_DIR [--rounds 5] [--runs 200] [--json]

A sweep times each trial in its own process, at its own moment: on a shared machine the
load moves between trials. This script loads every saved artifact (the per-chunk graph
of a composite one) and the family's eager fp32 module once, then times them round-robin
(`rounds` x `runs` calls each, same inputs), so every figure sees the same machine; it
prints the median per call and the ratio to eager fp32. Accuracy is the sweep's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def eager_runner(model_name: str, threads):
    """The family's eager fp32 per-chunk graph with its example inputs -> a callable."""
    import torch

    from avedge.api import plan

    if threads:
        torch.set_num_threads(threads)
    graph, _ = plan(model_name, "cpu", recipe="fp32").components[-1]  # the per-chunk graph
    module, inputs = graph.module.eval(), tuple(graph.example_inputs)

    def run():
        with torch.inference_mode():
            module(*inputs)
    return run


def artifact_runner(trial_dir: Path, backend: str, threads):
    from avedge.runtime import load
    from avedge.runtime.bench import example_arrays

    sess = load(trial_dir / "artifact", backend=backend, threads=threads)
    if hasattr(sess, "components"):  # a composite artifact: time its per-chunk graph
        sess = sess[list(sess.components)[-1]]
    arrays = example_arrays(sess)
    return lambda: sess.run_ordered(arrays)


def time_round(fn, runs: int) -> np.ndarray:
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1e3
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = json.loads((args.sweep_dir / "results.json").read_text())
    model = results["sweep"]["model"]
    runners = {}
    for t in results["trials"]:
        if t.get("status") != "ok" or t.get("latency_source") != "measured":
            continue
        key = f"{t['recipe']}/{t['backend']}"
        runners[key] = artifact_runner(args.sweep_dir / "trials" / t["trial_id"], t["backend"],
                                       None)
        runners[key]()  # warm-up
    runners["fp32/eager"] = eager_runner(model, None)
    runners["fp32/eager"]()
    times = {k: [] for k in runners}
    for _ in range(args.rounds):
        for k, fn in runners.items():
            times[k].append(time_round(fn, args.runs))
    med = {k: float(np.median(np.concatenate(v))) for k, v in times.items()}
    base = med["fp32/eager"]
    acc = {f"{t['recipe']}/{t['backend']}": t.get("metric", {}) for t in results["trials"]}
    rows = sorted(({"graph": k, "median_ms": round(v, 4), "speedup_vs_eager": round(base / v, 2),
                    "metric": (acc.get(k) or {}).get("value")} for k, v in med.items()),
                  key=lambda r: r["median_ms"])
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "cores": os.cpu_count(), "rounds": args.rounds, "runs": args.runs, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print("| graph | median ms per call | x eager fp32 | metric |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['graph']} | {r['median_ms']:.4f} | {r['speedup_vs_eager']:.2f} | "
              f"{r['metric'] if r['metric'] is not None else '-'} |")


if __name__ == "__main__":
    main()
