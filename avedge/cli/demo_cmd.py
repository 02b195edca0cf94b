"""avedge demo --out DIR: the main job end to end. Each capability adds its step."""

import numpy as np

from avedge.cli.common import print_table, quiet_native_logs


def register(sub):
    p = sub.add_parser("demo", help="export, run and benchmark the reference models")
    p.add_argument("--out", default="demo-out", help="directory for the demo's artifacts")
    p.add_argument("--runs", type=int, default=200)
    p.set_defaults(func=run)


def run(args) -> int:
    quiet_native_logs()
    from pathlib import Path

    from avedge.models.registry import resolve_model
    from avedge.runtime import load
    from avedge.runtime.bench import bench_session
    from avedge.targets import get_target

    out = Path(args.out)
    print("[1] export tiny-stream (streaming causal conv) for target cpu: .pte + .onnx")
    model = resolve_model("tiny-stream")
    art = get_target("cpu").export(model.module, model.example_inputs, out / "tiny-stream-cpu",
                                   family=model.family)
    for fmt, p in art.manifest["parity"].items():
        print(f"    {fmt:5s} parity vs eager on {p['backend']}: max abs err {p['max_abs_err']:.1e}")

    print("[2] stream one second of noise through each backend, 100-sample blocks")
    import torch

    signal = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    whole = model.module.forward_full(torch.from_numpy(signal)).detach().numpy()
    rows = []
    for backend in ("executorch", "onnxruntime"):
        stream = load(art.path, backend=backend).stream()
        pieces = []
        for i in range(0, signal.shape[-1], 100):
            stream.accept(signal[0, i:i + 100])
            pieces.append(stream.read())
        pieces.append(stream.finish())
        err = float(np.abs(np.concatenate(pieces, -1) - whole).max())
        print(f"    {backend:12s} streamed == whole-signal eager: max abs err {err:.1e}")
        r = bench_session(load(art.path, backend=backend), runs=args.runs)
        rows.append({**r, "median_ms": f"{r['median_ms']:.4f}", "p90_ms": f"{r['p90_ms']:.4f}"})

    print("[3] one chunk (8 ms of audio) per call:")
    print_table(rows, ["backend", "median_ms", "p90_ms", "runs"])
    return 0
