"""avedge bench DIR [--backend B] [--runs N] [--json]: time one call of the graph
(one chunk, for a streaming model) after warm-up; median and p90."""

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

    if args.runs < 1:
        raise AvedgeError(f"--runs must be at least 1, got {args.runs}")
    if (estimate := _estimate_instead(args)) is not None:
        return estimate
    loaded = load(args.artifact, backend=args.backend, threads=args.threads)
    sessions = getattr(loaded, "sessions", None) or {"": loaded}
    results = []
    for name, sess in sessions.items():
        r = bench_session(sess, runs=args.runs, warmup=args.warmup)
        budget = (sess.manifest.get("budgets") or {}).get("chunk_latency_ms")
        # The per-chunk budget binds graphs run per chunk, not run-once ones (an encoder).
        if budget is not None and sess.manifest.get("stream"):
            r["budget_ms"] = budget
            r["within_budget"] = r["median_ms"] <= budget
        results.append({"component": name, **r} if name else r)
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
    else:
        print_table([{**r, "median_ms": f"{r['median_ms']:.4f}", "p90_ms": f"{r['p90_ms']:.4f}"}
                     for r in results],
                    (["component"] if len(results) > 1 else [])
                    + ["backend", "median_ms", "p90_ms", "runs"]
                    + (["budget_ms", "within_budget"] if any("budget_ms" in r for r in results)
                       else []))
    return 0


def _estimate_instead(args) -> int | None:
    """An artifact only a device can run (Ethos-U NPU): print the export-time estimate,
    labelled as such, instead of failing. None when the host can time it itself."""
    from avedge.runtime.backends import backend_class
    from avedge.runtime.errors import BackendUnavailableError
    from avedge.runtime.manifest import read_manifest

    m = read_manifest(args.artifact)
    names = [args.backend] if args.backend else m.get("backends", [])
    reasons = [backend_class(n).unavailable_reason() for n in names]
    if m.get("kind", "model") != "model" or not names or not all(reasons):
        return None
    est = m.get("npu_estimate")
    if est is None:
        note = (m.get("cortex_m") or {}).get("note", "the manifest records no estimate")
        raise BackendUnavailableError(f"cannot time {args.artifact} here ({reasons[0]}); {note}")
    from avedge.targets.vela_report import format_estimate

    budget = (m.get("budgets") or {}).get("chunk_latency_ms")
    result = {"backend": names[0], "estimate_ms": est["inference_ms_at_clock"],
              "cycles": est["cycles_per_inference"], "clock_mhz": est["clock_mhz"],
              "source": est["source"], "measured": False, "why_not_measured": reasons[0]}
    if budget is not None:
        result.update(budget_ms=budget, within_budget=est["inference_ms_at_clock"] <= budget)
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
