"""avedge info DIR [--json]: what an artifact holds, and whether it is intact."""

from pathlib import Path

from avedge.cli.common import print_json


def register(sub):
    p = sub.add_parser("info", help="describe an artifact directory")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from avedge.runtime.manifest import read_manifest, verify_all

    m = read_manifest(args.artifact)
    verify_all(args.artifact, m)  # raises, naming the damaged file
    if args.json:
        print_json({**m, "verified": True})
        return 0
    print(f"{args.artifact}: {m.get('kind', 'model')} {m.get('family')} for target "
          f"{m['target']}, recipe {m['recipe']} (files verified)")
    if m.get("kind") == "pipeline":
        for name, comp in m["components"].items():
            where = f", target {comp['target']}" if comp.get("target") else ""
            print(f"  component {name}: {comp['dir']}/ ({comp['recipe']}{where})")
            _describe_model(read_manifest(Path(args.artifact) / comp["dir"]), indent="    ")
        return 0
    _describe_model(m)
    return 0


def _describe_model(m: dict, indent: str = "  ") -> None:
    from avedge.runtime.loader import servable_backends

    def say(line: str) -> None:
        print(indent + line)

    say(f"backends: {', '.join(servable_backends(m))}")
    for name, rec in m["files"].items():
        say(f"file {name}: {rec['bytes']} bytes, sha256 {rec['sha256'][:16]}…")
    for kind in ("inputs", "outputs"):
        for s in m[kind]:
            say(f"{kind[:-1]} {s['name']}: {tuple(s['shape'])} {s['dtype']}")
    if m.get("stream"):
        s = m["stream"]
        rings = "".join(f", ring {r['output']} -> {r['input']} ({len(r['taps'])} taps, "
                        f"lags up to {max(lag for _, lag in r['taps'])})"
                        for r in s.get("rings", []))
        say(f"stream: chunk {s['chunk_samples']} samples, lookahead "
            f"{s['lookahead_samples']}, sample rate {s['sample_rate']}, "
            f"{len(s['state'])} state tensors{rings}, conditions {s['conditions'] or 'none'}")
    if m.get("npu_estimate"):
        from avedge.targets.arm.vela import format_estimate

        for line in format_estimate(m["npu_estimate"]):
            say(f"npu: {line}")
    if m.get("memory_plan"):
        b = m.get("budgets") or {}
        ram = (f"; with the .pte: {b['model_ram_mb']:.3f} MB of the {b['ram_mb']:g} MB RAM "
               f"budget" if "model_ram_mb" in b else "")
        say(f"memory plan: activation arena "
            f"{m['memory_plan']['activation_arena_bytes'] / 1024:.1f} KiB{ram} "
            f"(delegate scratch not included)")
    if m.get("tosa_check"):
        t = m["tosa_check"]
        say(f"tosa check: max {t['max_lsb_diff']} LSB vs the fake-quant model over "
            f"{t['batches']} inputs ({'ok' if t['ok'] else 'FAILED'}, limit {t['lsb_limit']})")
    for fmt, p in m.get("parity", {}).items():
        say(f"parity {fmt} on {p['backend']}: max abs err {p['max_abs_err']:.2e}")
    say(f"parameters: {m.get('parameters')}; versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v))
