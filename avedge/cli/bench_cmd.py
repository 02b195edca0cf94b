"""avedge bench DIR [--backend B] [--runs N] [--json]: time one call of the graph
(one chunk, for a streaming model) after warm-up; median and p90."""

from pathlib import Path

from avedge.cli.common import print_json, print_table, quiet_native_logs


def register(sub):
    p = sub.add_parser("bench", help="time an artifact on a backend")
    p.add_argument("artifact")
    p.add_argument("--backend", help="backend (default: the artifact's first available)")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, help="threads (default: the target's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    quiet_native_logs()
    from avedge.runtime import load
    from avedge.runtime.bench import bench_session
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.manifest import open_manifest

    if args.runs < 1:
        raise AvedgeError(f"--runs must be at least 1, got {args.runs}")
    manifest = open_manifest(args.artifact)  # validated before anything else is read
    if (estimate := _estimate_instead(args, manifest)) is not None:
        return estimate
    on_device = _device_only_components(args, manifest)
    if on_device:  # a pipeline split between a host and an NPU: time what runs here
        sessions = {name: load(Path(args.artifact) / manifest.components[name].dir,
                               backend=args.backend, threads=args.threads)
                    for name in manifest.components if name not in on_device}
    else:
        loaded = load(args.artifact, backend=args.backend, threads=args.threads)
        sessions = getattr(loaded, "sessions", None) or {"": loaded}
    quiet_native_logs()  # again: a backend that imported torch reset its loggers
    results = [_estimate_row(name, m) for name, m in on_device.items()]
    for name, sess in sessions.items():
        r = bench_session(sess, runs=args.runs, warmup=args.warmup)
        budget = sess.spec.budgets.get("chunk_latency_ms")
        # The per-chunk budget binds graphs run per chunk, not run-once ones (an encoder).
        if budget is not None and sess.spec.stream:
            r["budget_ms"] = budget
            r["within_budget"] = r["median_ms"] <= budget
        results.append({"component": name, **r} if name else r)
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
    else:
        print_table([{**r, "median_ms": f"{r['median_ms']:.4f}", "p90_ms": f"{r['p90_ms']:.4f}"}
                     for r in results if r.get("measured", True)],
                    (["component"] if len(results) > 1 else [])
                    + ["backend", "median_ms", "p90_ms", "runs"]
                    + (["budget_ms", "within_budget"] if any("budget_ms" in r for r in results)
                       else []))
        for r in results:
            if not r.get("measured", True):
                verdict = ("" if "budget_ms" not in r else
                           f"; budget {r['budget_ms']:g} ms per chunk: "
                           f"{'within' if r['within_budget'] else 'OVER'}")
                print(f"component {r['component']}: not timed here ({r['why_not_measured']})"
                      f"\n  {r['estimate_ms']:.4f} ms per call, {r['cycles']} cycles at "
                      f"{r['clock_mhz']:g} MHz [{r['source']}]{verdict}")
    return 0


def _device_only_components(args, m) -> dict:
    """{name: manifest} of a pipeline's components that only a device can run (an
    Ethos-U NPU graph); empty for a single graph or when --backend is given."""
    from avedge.runtime.backends import backend_class
    from avedge.runtime.loader import component_manifests
    from avedge.runtime.manifest import PipelineManifest

    if not isinstance(m, PipelineManifest) or args.backend:
        return {}
    out = {}
    for name, cm in component_manifests(Path(args.artifact), m).items():
        if cm.backends and cm.npu_estimate and all(
                backend_class(n).unavailable_reason() for n in cm.backends):
            out[name] = cm
    return out


def _estimate_row(name: str, m: dict) -> dict:
    from avedge.runtime.backends import backend_class

    backend = m.backends[0]
    # In a pipeline the per-chunk budget binds only the streaming component.
    return {"component": name, **_estimate_fields(
        m, backend, backend_class(backend).unavailable_reason(), m.stream is not None)}


def _estimate_fields(m: dict, backend: str, why: str, budget_applies: bool = True) -> dict:
    """The manifest's NPU estimate as a bench result, labelled as not measured."""
    est = m.npu_estimate
    row = {"backend": backend, "estimate_ms": est["inference_ms_at_clock"],
           "cycles": est["cycles_per_inference"], "clock_mhz": est["clock_mhz"],
           "source": est["source"], "measured": False, "why_not_measured": why}
    budget = m.budgets.get("chunk_latency_ms")
    if budget is not None and budget_applies:
        row.update(budget_ms=budget, within_budget=est["inference_ms_at_clock"] <= budget)
    return row


def _estimate_instead(args, m) -> int | None:
    """An artifact only a device can run (Ethos-U NPU): print the export-time estimate,
    labelled as such, instead of failing. None when the host can time it itself."""
    from avedge.runtime.backends import backend_class
    from avedge.runtime.errors import BackendUnavailableError
    from avedge.runtime.manifest import ModelManifest

    names = [args.backend] if args.backend else m.backends
    reasons = [backend_class(n).unavailable_reason() for n in names]
    if not isinstance(m, ModelManifest) or not names or not all(reasons):
        return None
    est = m.npu_estimate
    if est is None:
        note = (m.cortex_m or {}).get("note", "the manifest records no estimate")
        raise BackendUnavailableError(f"cannot time {args.artifact} here ({reasons[0]}); {note}")
    from avedge.targets.arm.vela import format_estimate

    result = _estimate_fields(m, names[0], reasons[0])
    budget = result.get("budget_ms")
    if args.json:
        print_json(result)
        return 0
    print(f"{args.artifact}: not timed ({reasons[0]})")
    for line in format_estimate(est):
        print(f"  {line}")
    if budget is not None:
        print(f"  budget {budget:g} ms per chunk: "
              f"{'within' if result['within_budget'] else 'OVER'} (estimate)")
    return 0
