"""Drive a sweep: validate, lock the folder, run the unfinished trials through an
executor, write results.csv / results.json / pareto.png / report.html.

The sweep's own overhead (its wall time minus the time trial processes ran) is recorded
in results.json under "timing", with the time trial processes spent starting up
(imports) before run_trial began.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from avedge.runtime.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from avedge.sweep import pareto, report
from avedge.sweep.machine import machine_info
from avedge.sweep.plan import Sweep, trial_specs, validate
from avedge.sweep.store import SweepFolder
from avedge.sweep.trial import skipped_result, static_skip

OUTPUTS = ("results.csv", "results.json", "pareto.png", "report.html")


def run_sweep(sweep: Sweep, out: str | Path, executor=None, *, retry_failed: bool = False,
              progress: bool | None = None) -> dict:
    """Run `sweep` into folder `out` -> the summary written to results.json. Trials that
    finished in an earlier run of the same folder are kept, not run again (failed ones
    too, unless `retry_failed`). `progress`: a tqdm bar on stderr (None: when a terminal)."""
    from tqdm import tqdm

    from avedge.sweep.executors import make_executor

    t0 = time.perf_counter()
    sweep = validate(sweep)  # before anything is written
    executor = executor or make_executor(None, 1)
    folder = SweepFolder(out)
    with folder.locked():
        folder.use_settings(sweep.settings(), {"recipes": sweep.recipes,
                                               "targets": sweep.targets,
                                               "backends": sweep.backends})
        specs = trial_specs(sweep, folder.trials_dir)
        results: dict[str, dict] = {}
        todo = []
        for spec in specs:
            done = folder.result(spec)
            if done is not None and not (retry_failed and done.get("status") == "failed"):
                results[spec["trial_id"]] = done
                continue
            folder.forget(spec)
            reason = static_skip(spec)  # refused by the target: no process to start
            if reason is not None:
                results[spec["trial_id"]] = skipped_result(spec, reason)
                folder.record(spec, results[spec["trial_id"]])
                continue
            todo.append(spec)
        busy: list[tuple[float, float]] = []
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit="trial",
                   desc="sweep", file=sys.stderr, disable=None if progress is None
                   else not progress, dynamic_ncols=True)
        try:
            with contextlib.closing(iter(executor.map(todo))) as finished:
                for spec, result in finished:
                    end = time.perf_counter()
                    ran = float(result.get("process_s") or result.get("wall_s") or 0.0)
                    busy.append((end - ran, end))
                    folder.record(spec, result)
                    results[spec["trial_id"]] = result
                    bar.update(1)
                    bar.write(_line(result), file=sys.stderr)
        finally:  # interrupted too: the files describe every trial finished so far
            bar.close()
            ordered = [results[s["trial_id"]] for s in specs if s["trial_id"] in results]
            summary = _write_outputs(folder.root, sweep, ordered, t0, busy)
    return summary


def _line(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['trial_id']}: {r['status']}: {r.get('reason') or r.get('error')}"
    metric = r.get("metric") or {}
    value = metric.get("value")
    score = f"{metric.get('name')} {value:.3f}, " if value is not None else ""
    return (f"{r['trial_id']}: ok: {score}{r['latency_median_ms']:.4f} ms "
            f"(p90 {r['latency_p90_ms']:.4f}), {r['size_bytes'] / 1024:.1f} KiB, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB")


def _union_s(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one span (trials running side by side count once)."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _write_outputs(root: Path, sweep: Sweep, results: list[dict], t0: float,
                   busy: list[tuple[float, float]]) -> dict:
    title = (f"{sweep.model}: {len([r for r in results if r.get('status') == 'ok'])} trials "
             f"({', '.join(sweep.targets)})")
    png, on_front = pareto.plot_png(results, title)
    wall = time.perf_counter() - t0
    in_trials = _union_s(busy)
    # Only this run's trials carry process_s (the executor's clock around the process).
    startup = sum(max(0.0, r["process_s"] - r["wall_s"]) for r in results
                  if "process_s" in r and "wall_s" in r)
    summary = {
        "sweep": {"model": sweep.model, "recipes": sweep.recipes, "targets": sweep.targets,
                  "backends": sweep.backends, "eval_n": sweep.eval_n,
                  "weights": sweep.weights, "metric": sweep.metric, "runs": sweep.runs,
                  "warmup": sweep.warmup},
        "machine": machine_info(),
        # This run's timing: trials finished in an earlier run are not in it.
        "timing": {"wall_s": round(wall, 3), "in_trials_s": round(in_trials, 3),
                   "overhead_s": round(wall - in_trials, 3),
                   "trial_startup_s": round(startup, 3), "trials_run": len(busy)},
        "counts": {s: sum(r.get("status") == s for r in results)
                   for s in ("ok", "skipped", "failed")},
        "pareto_front": on_front,
        "trials": results,
        "files": {name: str(root / name) for name in OUTPUTS},
    }
    atomic_write_bytes(root / "pareto.png", png)
    atomic_write_text(root / "results.csv", report.csv_text(results, set(on_front)))
    atomic_write_json(root / "results.json", summary)
    atomic_write_text(root / "report.html", report.html_text(summary, png))
    return summary
