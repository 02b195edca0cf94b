"""One trial of a sweep: compress + export, load, metric, latency, size, peak RSS.

    run_trial(spec: dict) -> dict      (the contract every executor runs; never raises)

`spec` (plan.py): {"trial_id", "model", "weights", "recipe", "target", "backend",
"eval_n", "metric", "runs", "warmup", "out_dir"}. The artifact is written to
out_dir/artifact and the result to out_dir/result.json, atomically: a folder holding
result.json is a finished trial and is never run again. Each start is appended to
out_dir/starts.jsonl (a resumed sweep shows which trials ran twice).

The result's "status" is "ok", "skipped" (with "reason": the target lacks the backend or
refuses the recipe, the backend is missing on this machine, the recipe does not apply to
the model) or "failed" (with "error", one line; the traceback is in out_dir/error.txt).

Run as `python -m avedge.sweep.trial SPEC.json` by the local executor: a fresh process
per trial, so ru_maxrss is this trial's own peak.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path

from avedge.runtime.errors import AvedgeError, RecipeNotApplicable
from avedge.runtime.fsutil import atomic_write_json

RESULT = "result.json"
STARTS = "starts.jsonl"
ARTIFACT = "artifact"


class Skip(Exception):
    """The trial cannot apply here; recorded as "skipped" with this reason."""


def run_trial(spec: dict) -> dict:
    """Run one trial and write its result.json; -> the result. Never raises."""
    t0 = time.perf_counter()
    out = Path(spec["out_dir"])
    base = {k: spec.get(k) for k in ("trial_id", "model", "recipe", "target", "backend")}
    try:
        out.mkdir(parents=True, exist_ok=True)
        attempt = _record_start(out)
        base.update(attempt=attempt, pid=os.getpid(), host=socket.gethostname())
        reason = static_skip(spec)
        if reason is not None:
            raise Skip(reason)
        result = {**base, "status": "ok", **_measure(spec, out)}
    except Skip as exc:
        result = {**base, "status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded; the sweep goes on
        result = {**base, "status": "failed", "error": one_line(exc)}
        try:
            (out / "error.txt").write_text(traceback.format_exc())
        except OSError:
            pass
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    result["peak_rss_mb"] = peak_rss_mb()
    try:
        atomic_write_json(out / RESULT, result)
    except Exception as exc:  # noqa: BLE001 - the contract: never raise
        result = {**result, "status": "failed", "error": f"cannot write {out / RESULT}: "
                                                          f"{one_line(exc)}"}
    return result


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, AvedgeError) else f"{type(exc).__name__}: {msg}"


def skipped_result(spec: dict, reason: str) -> dict:
    """The result of a trial refused before it starts (written by the driver)."""
    return {k: spec.get(k) for k in ("trial_id", "model", "recipe", "target", "backend")} | {
        "status": "skipped", "reason": reason, "attempt": 0}


def static_skip(spec: dict) -> str | None:
    """Why the trial cannot run anywhere, known without building the model: the target
    does not list the backend, or its lowering refuses the recipe. None: it may run."""
    from avedge.quantize import get_recipe
    from avedge.targets import get_target
    from avedge.targets.lowering import refusal

    target = get_target(spec["target"])
    if spec["backend"] not in target.backends:
        return (f"target {target.name!r} runs on {', '.join(target.backends)}; backend "
                f"{spec['backend']!r} is not one of them")
    return refusal(get_recipe(spec["recipe"]), target)


def _record_start(out: Path) -> int:
    """Append this start to starts.jsonl; -> which attempt this is (1 = first)."""
    for leftover in [*out.glob(f".{ARTIFACT}.tmp-*"), *out.glob(f".{ARTIFACT}.old-*")]:
        shutil.rmtree(leftover, ignore_errors=True)  # from an attempt killed mid-export
    log = out / STARTS
    attempt = 1 + (len(log.read_text().splitlines()) if log.exists() else 0)
    with open(log, "a") as f:
        f.write(json.dumps({"attempt": attempt, "pid": os.getpid(), "time": time.time()}) + "\n")
    return attempt


def _measure(spec: dict, out: Path) -> dict:
    from avedge import api
    from avedge.quantize import get_recipe
    from avedge.targets import get_target

    target = get_target(spec["target"])
    backend = spec["backend"]
    from avedge.runtime.backends import backend_class

    missing = backend_class(backend).unavailable_reason()
    # A missing backend of an NPU target is not a skip: its export carries the compiler's
    # estimate, recorded as such (_estimate).
    if missing and not target.npu:
        raise Skip(f"backend {backend!r} is not available on this machine ({missing})")
    # The artifact holds only the file this backend runs (the target's other formats
    # would cost a lowering each and are not what this trial measures). Refusals were
    # decided on the whole target (static_skip), as `avedge export --target` decides them.
    one = dataclasses.replace(target, backends=(backend,))
    t = time.perf_counter()
    try:  # the recipe is applied once, by the export itself
        art = api.export(spec["model"], one, out / ARTIFACT, recipe=spec["recipe"],
                         weights=spec.get("weights"), measure=False)
    except RecipeNotApplicable as exc:  # e.g. pruning a model without MLP pairs
        where = f" (graph {exc.graph!r})" if exc.graph else ""
        raise Skip(f"recipe {spec['recipe']!r} does not apply{where}: {one_line(exc)}") \
            from exc
    export_s = time.perf_counter() - t
    result = {"family": art.manifest.get("family"), "threads": target.threads,
              "recipe_configs": get_recipe(spec["recipe"]).to_json()["configs"],
              "artifact": str(art.path), "export_s": round(export_s, 3),
              **_sizes(art.path, backend), **_deviation(art.path)}
    if missing:  # an NPU target: what its compiler estimated, labelled as such
        return {**result, **_estimate(art.path, missing)}
    t = time.perf_counter()
    result["metric"] = _metric(spec, art.path, backend, target.threads)
    result["eval_s"] = round(time.perf_counter() - t, 3)
    graph = measured_graph(result["metric"], result.get("component_size_bytes"))
    if graph is not None:  # one graph of alternatives: its size is what a device ships
        result.update(size_bytes=result["component_size_bytes"][graph], measured_graph=graph)
        if "component_recipe_deviation" in result:
            result["recipe_deviation"] = result["component_recipe_deviation"][graph]
    t = time.perf_counter()
    result.update(_latency(art.path, backend, target.threads, spec["runs"], spec["warmup"],
                           graph))
    result["bench_s"] = round(time.perf_counter() - t, 3)
    return result


def measured_graph(metric: dict | None, components: dict | None) -> str | None:
    """The graph of a composite artifact that the metric was measured on, when the metric
    names one ("component") and the graphs are alternatives rather than stages (the lip
    reader's rate1/rate2/rate4: a user runs one rate; the family's WER is of rate 1). The
    trial's headline latency and size are then that graph's, so accuracy, latency and
    size describe the same graph; every graph's own figures stay in component_latency /
    component_size_bytes. None: the whole artifact is the headline (stages of one
    pipeline, as the speech extractor's per-chunk graph with its run-once encoder)."""
    name = (metric or {}).get("component")
    if name is None or not components:
        return None
    if name not in components:
        raise AvedgeError(f"the metric names graph {name!r}; the artifact holds "
                          f"{', '.join(components)}")
    return name


def _component_manifests(path: Path) -> dict:
    from avedge.runtime.loader import component_manifests
    from avedge.runtime.manifest import PipelineManifest, open_manifest

    m = open_manifest(path)
    return component_manifests(path, m) if isinstance(m, PipelineManifest) else {"": m}


def _sizes(path: Path, backend: str) -> dict:
    """Bytes of the model files `backend` runs (all graphs), and of the whole folder."""
    from avedge.runtime.backends import backend_class

    fmt = backend_class(backend).format
    per = {name: sum(rec.bytes for rec in m.files.values() if rec.format == fmt)
           for name, m in _component_manifests(path).items()}
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"size_bytes": sum(per.values()), "artifact_bytes": total,
            **({"component_size_bytes": per} if "" not in per else {})}


def _deviation(path: Path) -> dict:
    """How far the recipe's module-level compression moved the eager output (relative to
    its scale, on the export's example inputs; the manifests' recipe_deviation): shown
    beside the metric, as information. A composite's largest, each graph's kept. None:
    the recipe changed no module (its int8/fp16 is the lowering's, seen in parity)."""
    per = {name: (m.recipe_deviation.rel_err if m.recipe_deviation else None)
           for name, m in _component_manifests(path).items()}
    known = [v for v in per.values() if v is not None]
    out = {"recipe_deviation": max(known) if known else None}
    return out if "" in per else {**out, "component_recipe_deviation": per}


def _metric(spec: dict, path: Path, backend: str, threads) -> dict | None:
    """The user's --metric on the loaded artifact, else the family's measure on n items
    through its task code; None with no metric at all."""
    import inspect

    from avedge.models.registry import get_family

    if spec.get("metric"):
        from avedge.runtime import load
        from avedge.sweep.plan import load_metric

        value = load_metric(spec["metric"])(load(path, backend=backend, threads=threads))
        return check_metric(value, spec["metric"])
    if ":" in spec["model"]:
        return {"name": None, "value": None,
                "reason": "a user model has no metric unless --metric pkg.mod:function is given"}
    family = get_family(spec["model"])
    if family.measure is None:
        return {"name": None, "value": None, "reason": f"family {family.name!r} has no metric"}
    params = inspect.signature(family.measure).parameters
    kwargs = {k: v for k, v in (("n", spec["eval_n"]), ("backend", backend)) if k in params}
    value = family.measure(path, **kwargs)
    if value is not None and "n" not in params:
        value = {**value, "note": "this family's measure takes no item count (--eval ignored)"}
    return value


def check_metric(value, where: str) -> dict:
    """A metric function's return: {"name": str, "value": number | None, ...}."""
    if not (isinstance(value, dict) and isinstance(value.get("name"), str)
            and (value.get("value") is None or isinstance(value["value"], (int, float)))):
        raise AvedgeError(f"metric {where} returned {str(value)[:80]!r}; it must return "
                          f"{{'name': str, 'value': float}} (optional 'higher_is_better': bool)")
    return {**value, "value": None if value["value"] is None else float(value["value"])}


def _latency(path: Path, backend: str, threads, runs: int, warmup: int,
             graph: str | None = None) -> dict:
    """Per-call latency with the target's threads, as `avedge bench` times it. A
    composite artifact's headline is `graph`'s when given (measured_graph), else its
    streaming graphs' (run per chunk), summed, else all its graphs' summed; every graph's
    own figures are kept."""
    from avedge.runtime import load
    from avedge.runtime.bench import bench_session

    loaded = load(path, backend=backend, threads=threads)
    sessions = getattr(loaded, "sessions", None) or {"": loaded}
    per = {name: {**bench_session(s, runs=runs, warmup=warmup),
                  "streaming": s.spec.stream is not None} for name, s in sessions.items()}
    headline = ([per[graph]] if graph is not None
                else [r for r in per.values() if r["streaming"]] or list(per.values()))
    out = {"latency_median_ms": sum(r["median_ms"] for r in headline),
           "latency_p90_ms": sum(r["p90_ms"] for r in headline),
           "latency_source": "measured", "runs": runs}
    if "" not in per:
        out["component_latency"] = per
    return out


def _estimate(path: Path, why: str) -> dict:
    """An NPU graph this host cannot run: the export-time compiler estimate per call."""
    ests = [m.npu_estimate for m in _component_manifests(path).values() if m.npu_estimate]
    if not ests:
        raise Skip(f"the backend cannot run here ({why}) and the artifact records no estimate")
    ms = sum(e["inference_ms_at_clock"] for e in ests)
    return {"latency_median_ms": ms, "latency_p90_ms": ms,
            # e.g. "estimate (Vela), not a measurement"
            "latency_source": f"{'; '.join(sorted({e['source'] for e in ests}))}: {why}",
            "metric": {"name": None, "value": None,
                       "reason": f"the graphs run only on the device ({why})"}}


def main(argv: list[str] | None = None) -> int:
    """`python -m avedge.sweep.trial SPEC.json`: run it; the result is in result.json."""
    from avedge.cli.common import quiet_native_logs

    quiet_native_logs()
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = run_trial(spec)
    print(json.dumps({"trial_id": result["trial_id"], "status": result["status"],
                      "python": platform.python_version()}))
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). Linux's VmHWM: ru_maxrss of a process
    started by fork carries the parent's peak over (a 600 MB driver made every trial read
    ~600 MB), VmHWM starts again at the exec. ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    sys.exit(main())

