"""avedge sweep MODEL --recipes R1,R2 --targets T1,T2 [--backends B1,B2] [--eval N]
[--weights FILE] [--metric pkg.mod:function] --out DIR [--ray ADDRESS] [--workers N]
[--json]: every recipe x target x backend measured on the artifact that would ship
(avedge/sweep/)."""

from avedge.cli.common import print_json, print_table, quiet_native_logs


def _names(text: str) -> list[str]:
    return [n for n in (s.strip() for s in text.split(",")) if n]


def register(sub):
    p = sub.add_parser(
        "sweep", help="accuracy vs latency of compression recipes, measured on real artifacts",
        description="For each recipe x target x backend: compress and export (avedge.export), "
                    "load the artifact in the runtime, score the family's metric on its eval "
                    "set, time one call with the target's threads, and record the size of "
                    "the model file and the trial's peak RSS. Writes results.csv, "
                    "results.json, pareto.png and report.html to --out; rerun the same "
                    "command to resume (finished trials are kept).")
    p.add_argument("model", help="a registered family (see `avedge targets --family`) or "
                                 "package.module:factory returning (module, example_inputs)")
    p.add_argument("--recipes", required=True, type=_names, metavar="R1,R2,...",
                   help="comma-separated recipe names (see `avedge recipes`)")
    p.add_argument("--targets", required=True, type=_names, metavar="T1,T2,...",
                   help="comma-separated targets (see `avedge targets`)")
    p.add_argument("--backends", type=_names, metavar="B1,B2,...",
                   help="comma-separated backends (default: each target's own)")
    p.add_argument("--eval", type=int, default=4, dest="eval_n", metavar="N",
                   help="eval items the family metric is scored on (default 4)")
    p.add_argument("--weights", metavar="FILE", help="a weights file for the family (default: its own "
                                     "choice per target)")
    p.add_argument("--metric", metavar="pkg.mod:function",
                   help="your metric: function(session) -> {'name': str, 'value': float, "
                        "'higher_is_better': bool (optional, default true)}, called on the "
                        "loaded artifact (a runtime Session, or a Pipeline); replaces the "
                        "family's")
    p.add_argument("--runs", type=int, default=200, metavar="N", help="timed calls per trial (default 200)")
    p.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed calls first (default 20)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed if it holds a sweep)")
    p.add_argument("--ray", metavar="ADDRESS", help="run trials on the Ray cluster at ADDRESS "
                                                    "(default: processes on this machine)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local trials at a time (default 1: trials do not disturb each "
                        "other's timings)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the trials that failed in an earlier run of --out again")
    p.add_argument("--json", action="store_true", help="print results.json's content")
    p.set_defaults(func=run)


def run(args) -> int:
    quiet_native_logs()
    from avedge.sweep import Sweep, run_sweep
    from avedge.sweep.executors import make_executor
    from avedge.sweep.plan import validate

    sweep = validate(Sweep(args.model, args.recipes, args.targets, args.backends,
                           eval_n=args.eval_n, weights=args.weights, metric=args.metric,
                           runs=args.runs, warmup=args.warmup))
    executor = make_executor(args.ray, args.workers)  # a dead address fails before writing
    try:
        summary = run_sweep(sweep, args.out, executor, retry_failed=args.retry_failed)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    if args.json:
        print_json(summary)
        return 0
    rows = []
    for r in summary["trials"]:
        metric = r.get("metric") or {}
        value = metric.get("value")
        rows.append({"trial": r["trial_id"], "status": r["status"],
                     "metric": "-" if value is None else f"{value:.3f}",
                     "median_ms": _ms(r.get("latency_median_ms")),
                     "p90_ms": _ms(r.get("latency_p90_ms")),
                     "size_kib": "-" if r.get("size_bytes") is None
                     else f"{r['size_bytes'] / 1024:.1f}",
                     "peak_rss_mb": r.get("peak_rss_mb", "-"),
                     "front": "*" if r["trial_id"] in summary["pareto_front"] else ""})
    print_table(rows, ["trial", "status", "metric", "median_ms", "p90_ms", "size_kib",
                       "peak_rss_mb", "front"])
    for r in summary["trials"]:
        if r["status"] != "ok":
            print(f"{r['trial_id']}: {r['status']}: {r.get('reason') or r.get('error')}")
    t = summary["timing"]
    print(f"sweep overhead (wall time outside trials): {t['overhead_s']:.1f} s of "
          f"{t['wall_s']:.1f} s")
    print("wrote " + ", ".join(summary["files"].values()))
    return 0


def _ms(v) -> str:
    return "-" if v is None else f"{v:.4f}"
