"""avedge info DIR [--json]: what an artifact holds, and whether it is intact.

The whole artifact is checked: the manifest against its schema, then every listed file
(of every component) against its size and sha256. No model file is handed to a runtime.
"""

from pathlib import Path

from avedge.cli.common import print_json
from avedge.cli.parity_text import deviation_line, parity_against


def register(sub):
    p = sub.add_parser("info", help="describe an artifact directory")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from avedge.runtime.loader import component_manifests
    from avedge.runtime.manifest import PipelineManifest, open_manifest, verify_all

    path = Path(args.artifact)
    m = open_manifest(path)
    verify_all(path, m)  # raises, naming the damaged file
    subs = component_manifests(path, m) if isinstance(m, PipelineManifest) else {}
    for name, sub in subs.items():
        verify_all(path / m.components[name].dir, sub)
    if args.json:
        print_json({**m.to_json(), "verified": True})
        return 0
    print(f"{args.artifact}: {m.kind} {m.family} for target {m.target}, recipe {m.recipe} "
          f"(files verified)")
    for name, sub in subs.items():
        comp = m.components[name]
        where = f", target {comp.target}" if comp.target else ""
        print(f"  component {name}: {comp.dir}/ ({comp.recipe}{where})")
        _describe_model(sub, indent="    ")
    if not subs:
        _describe_model(m)
    return 0


def _describe_model(m, indent: str = "  ") -> None:
    from avedge.runtime.loader import servable_backends

    def say(line: str) -> None:
        print(indent + line)

    say(f"backends: {', '.join(servable_backends(m))}")
    for name, rec in m.files.items():
        say(f"file {name}: {rec.bytes} bytes, sha256 {rec.sha256[:16]}…")
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for s in specs:
            axis = f", time axis {s.time_axis}" if s.time_axis is not None else ""
            say(f"{kind} {s.name}: {tuple(s.shape)} {s.dtype}{axis}")
    if m.stream:
        s = m.stream
        rings = "".join(f", ring {r.output} -> {r.input} ({len(r.taps)} taps, "
                        f"lags up to {max((lag for _, lag in r.taps), default=0)})"
                        for r in s.rings)
        say(f"stream: chunk {s.chunk_samples} samples, lookahead "
            f"{s.lookahead_samples}, sample rate {s.sample_rate}, "
            f"{len(s.state)} state tensors{rings}, conditions {s.conditions or 'none'}")
    if m.npu_estimate:
        from avedge.targets.arm.vela import format_estimate

        for line in format_estimate(m.npu_estimate):
            say(f"npu: {line}")
    if m.memory_plan:
        b = m.budgets
        ram = (f"; with the .pte: {b['model_ram_mb']:.3f} MB of the {b['ram_mb']:g} MB RAM "
               f"budget" if b.get("model_ram_mb") is not None and b.get("ram_mb") is not None
               else "")
        say(f"memory plan: activation arena "
            f"{m.memory_plan.activation_arena_bytes / 1024:.1f} KiB{ram} "
            f"(delegate scratch not included)")
    if m.tosa_check:
        t = m.tosa_check
        say(f"tosa check: max {t['max_lsb_diff']} LSB vs the fake-quant model over "
            f"{t['batches']} inputs ({'ok' if t['ok'] else 'FAILED'}, limit {t['lsb_limit']})")
    record = m.to_json()
    for fmt, p in m.parity.items():
        say(f"parity {fmt} on {p.backend} vs {parity_against(record)}: max abs err "
            f"{p.max_abs_err:.2e}, relative {p.rel_err:.2e}")
    deviation = deviation_line(record)
    if deviation:
        say(deviation)
    say(f"parameters: {m.parameters}; versions: "
        + ", ".join(f"{k} {v}" for k, v in m.versions.items() if v))
