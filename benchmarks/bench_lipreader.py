"""The lip reader's quality and speed tables (issue #16): exported artifacts through the runtime.

    .venv/bin/python benchmarks/bench_lipreader.py --bank /work/bench/lipbank \
        [--n 100 | --quick] [--weights FILE] [--backend onnxruntime|executorch] \
        [--artifact-fp32 DIR --artifact-int8 DIR] [--out results.json]

Quality (word error rate, %, lower is better): test-split GRID utterances (held-out voices
and faces) from the bank's ROI cache, whole utterances padded to the 100-frame window as
the runtime pads a clip, read by the exported graph of each token rate through the task
code users run (runtime/pipelines/lipread.py run_windows, then the best sentence of the
artifact's grammar, as `avedge lipread` reads; greedy CTC beside it). A modality that
is off is fed as zeros with its flag 0, as the runtime does. Babble: 4 other test voices
at 5, 0, -5 dB SNR over the utterance (models/lipreader/train.py with_babble). Rows:
precision (fp32, int8: the `int8` recipe) x token rate x modality; video-only reading does
not hear the babble, so its babble columns repeat the clean figure ("=").
Held-out synthesizer: piper is kept out of training (TrainConfig.holdout_synth); its GRID
utterances (train split of the cache) read from audio and audio-visual at rate 1. piper's
face is a training face, so that row tests the unseen synthesizer's VOICE.
Floor: the viseme oracle of benchmarks/lipread_floor.py (the WER a reader that sees the
exact viseme sequence makes), beside the video-only rows.

Speed (one thread): per token rate, median / p90 ms of one 100-frame (4 s) window for the
.pte (ExecuTorch) and .onnx graphs, fp32 and int8, and the model's real-time factor
(ms / 4000); the eager model split into its front-ends (features(): visual and audio) and
the encoder + CTC head at each rate (decode_features()), torch at one thread, which shows
why a higher rate saves little: the visual front-end runs at 25 Hz whatever the rate.
The face/ROI stage (tracking + crop per frame) is benchmarks/bench_face_roi.py, run as a
subprocess and quoted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATES = (1, 2, 4)
PRECISIONS = ("fp32", "int8")
MODALITIES = {"video": (1.0, 0.0), "audio": (0.0, 1.0), "audio-visual": (1.0, 1.0)}
SNRS = (5.0, 0.0, -5.0)
CONDITIONS = ("clean",) + tuple(f"babble {s:g} dB" for s in SNRS)
SEED = 1234  # the utterance draw (the family metric's seed, on the test split)
HOLDOUT_SYNTH = "piper"


# ----------------------------------------------------------------------------- machine

def weights_info(path: Path) -> dict:
    """sha256 of the weights file and its training record's steps (the .json beside it)."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    rec = path.with_suffix(".json")
    meta = json.loads(rec.read_text()) if rec.is_file() else {}
    return {"file": str(path), "sha256": sha, "steps": meta.get("steps"),
            "train_minutes": meta.get("train_minutes"), "video_hours": meta.get("video_hours")}


# ----------------------------------------------------------------------------- items

def pick(cache, n: int, kind: str = "grid", synth: str | None = None,
         seed: int = SEED) -> list[dict]:
    """n whole utterances of `kind` (and `synth`) that fit one window, drawn by seed."""
    from avedge.models.lipreader import data as D

    fits = [i for i, u in enumerate(cache.utts) if u["kind"] == kind and u["frames"] <= D.lr.WINDOW
            and (synth is None or u["synth"] == synth)]
    rng = np.random.default_rng(seed)
    return [{**D.sample(cache, fits[i], None), "index": cache.utts[fits[i]]["index"]}
            for i in sorted(rng.permutation(len(fits))[:n])]


def conditions(test_cache, windows: list[dict]) -> dict[str, list[dict]]:
    """Clean and babble (other voices of the test split) versions of the windows."""
    from avedge.models.lipreader.train import with_babble

    out = {"clean": windows}
    for s in SNRS:
        out[f"babble {s:g} dB"] = with_babble(test_cache, windows, s)
    return out


# ----------------------------------------------------------------------------- artifacts

def export(precision: str, weights: Path, out: Path) -> float:
    """Export the lip reader for target cpu (fp32: the target's default recipe; int8: the
    `int8` recipe) -> seconds taken."""
    from avedge import api

    t0 = time.perf_counter()
    api.export("lipreader", "cpu", out, recipe="int8" if precision == "int8" else None,
               weights=str(weights), measure=False)
    return time.perf_counter() - t0


def open_pipeline(artifact: Path, backend: str):
    """The artifact's graphs (all rates), one thread each, on `backend`."""
    from avedge.runtime.loader import load
    from avedge.runtime.pipelines.lipread import check_lipreader

    pipe = load(artifact, backend=backend, threads=1)
    check_lipreader(artifact, pipe.spec)
    return pipe


def read_all(pipe, rate: int, windows: list[dict], flags) -> list[np.ndarray]:
    """Per window its real frames' log-probs (2 * frames, V), through run_windows."""
    from avedge.runtime.pipelines.lipread import open_rate, run_windows, window_hop

    session, extra = open_rate(pipe, rate)
    window = int(session.spec.input("video").shape[1])
    hop = window_hop(window, max(int(r) for r in extra["rates"]))
    mean, std = float(extra["roi_mean"]), float(extra["roi_std"])
    flags = np.asarray(flags, np.float32)
    out = []
    for w in windows:
        n = len(w["video"])
        video = ((w["video"].astype(np.float32) / 255.0 - mean) / std if flags[0]
                 else np.zeros(w["video"].shape, np.float32))
        audio = w["audio"] if flags[1] else np.zeros_like(w["audio"])
        lp = run_windows(session, video, audio, flags, window, hop, int(extra["hop_samples"]))
        k = len(lp) // n
        out.append(lp[k * w["lead"]: k * (w["lead"] + w["frames"])])
    return out


def decode(lps: list[np.ndarray], extra: dict) -> tuple[list[str], list[str]]:
    """(texts as `avedge lipread` reads them: the artifact's grammar, or its word list for
    an artifact without one; greedy texts)."""
    from avedge.runtime.decoding import ctc
    from avedge.runtime.pipelines.lipread import search

    vocab, sep = list(extra["vocab"]), extra["separator"]
    beam = [search(lp, extra, 1.0)[0].text for lp in lps]
    greedy = [ctc.greedy(lp, vocab, separator=sep).text for lp in lps]
    return beam, greedy


def wer_pct(refs: list[str], hyps: list[str]) -> float:
    from avedge.models.lipreader.train import wer

    return round(100 * wer(refs, hyps), 2)


def quality(pipe, sets: dict[str, list[dict]], rates, modalities, log) -> dict:
    """{modality: {rate: {condition: {"wer", "wer_greedy"}}}}; video only: clean only."""
    extra = pipe.spec.extra
    res: dict = {}
    for mod in modalities:
        res[mod] = {}
        for r in rates:
            res[mod][r] = {}
            conds = ["clean"] if mod == "video" else list(sets)
            for c in conds:
                t0 = time.perf_counter()
                ws = sets[c]
                beam, greedy = decode(read_all(pipe, r, ws, MODALITIES[mod]), extra)
                refs = [" ".join(w["words"]) for w in ws]
                res[mod][r][c] = {"wer": wer_pct(refs, beam), "wer_greedy": wer_pct(refs, greedy),
                                  "hyps": beam}
                log(f"  {mod:12s} rate {r} {c:15s} WER {res[mod][r][c]['wer']:6.2f} % "
                    f"(greedy {res[mod][r][c]['wer_greedy']:6.2f}) "
                    f"{time.perf_counter() - t0:5.1f} s")
    return res


def video_files(pipe, bank_dir: str, windows: list[dict], rates, log) -> dict:
    """The same utterances as a user has them: mp4 files written as the corpus writes its
    test videos (the speaker's face, full 512x512 frames, H.264 crf 20, the audio muxed
    in), read by `lipread()` - read_video, the mouth tracker, the crop, the grammar.
    {modality: {rate: {"wer", "hyps"}}}; the ROI-cache rows above read rendered ROIs."""
    from avedge.models.corpus.face import FaceVariation, default_photo, find_mouth
    from avedge.models.corpus.render import make_speaker, render_frames
    from avedge.models.corpus.visemes import lips_pose
    from avedge.models.corpus.voicebank import open_bank
    from avedge.models.corpus.writer import write_mp4, write_wav
    from avedge.runtime.pipelines.lipread import lipread

    bank = open_bank(bank_dir)
    by_key = {(u.voice, u.index): u for v in bank.by_voice for u in bank.by_voice[v]}
    mouth = find_mouth(default_photo())
    tmp = tempfile.TemporaryDirectory(prefix="bench-lipreader-mp4-")
    paths = []
    for k, w in enumerate(windows):  # the face data.build_split draws for the voice
        u = by_key[(w["voice"], w["index"])]
        sp = make_speaker(FaceVariation.of_voice(0, w["voice"]), mouth=mouth)
        base = Path(tmp.name) / f"{k:03d}"
        write_wav(base.with_suffix(".wav"), bank.audio(u))
        write_mp4(base.with_suffix(".mp4"), render_frames(sp, lips_pose(u.phones, w["frames"])),
                  sp.photo.shape[:2], base.with_suffix(".wav"))
        paths.append(base.with_suffix(".mp4"))
    refs = [" ".join(w["words"]) for w in windows]
    res: dict = {}
    for mod, use_audio in (("video", False), ("audio-visual", True)):
        res[mod] = {}
        for r in rates:
            t0 = time.perf_counter()
            hyps = [lipread(pipe, p, use_audio=use_audio, rate=r)["text"] for p in paths]
            res[mod][r] = {"wer": wer_pct(refs, hyps), "hyps": hyps}
            log(f"  mp4 {mod:12s} rate {r} WER {res[mod][r]['wer']:6.2f} % "
                f"{time.perf_counter() - t0:5.1f} s")
    tmp.cleanup()
    return res


# ----------------------------------------------------------------------------- speed

def graph_speed(artifact: Path, backend: str, runs: int, warmup: int) -> dict:
    """rate -> bench_session of that rate's graph (one thread)."""
    from avedge.runtime.bench import bench_session

    pipe = open_pipeline(artifact, backend)
    extra = pipe.spec.extra
    out = {}
    for r in RATES:
        from avedge.runtime.pipelines.lipread import open_rate

        session, _ = open_rate(pipe, r)
        b = bench_session(session, runs=runs, warmup=warmup)
        b["rtf"] = round(b["median_ms"] / (1000 * int(extra["window"]) / float(extra["fps"])), 4)
        out[r] = b
    return out


def _times(fn, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        t[i] = (time.perf_counter() - t0) * 1e3
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}


def eager_split(weights: Path, window: dict, runs: int, warmup: int) -> dict:
    """The eager model's stages on one real window, torch at one thread: visual front-end,
    audio front-end, features() (both, fused), decode_features() at each rate."""
    import torch
    from avedge.models.lipreader import data as D
    from avedge.models.lipreader import model as lr

    torch.set_num_threads(1)
    model = lr.load_weights(weights).eval()
    video = D.normalise(torch.from_numpy(window["video"][None]))
    audio = torch.from_numpy(window["audio"][None])
    mod = torch.ones(1, 2)
    out = {}
    with torch.inference_mode():
        out["visual front-end"] = _times(lambda: model.visual(video), runs, warmup)
        out["audio front-end"] = _times(lambda: model.audio(audio), runs, warmup)
        out["features()"] = _times(lambda: model.features(video, audio, mod), runs, warmup)
        feats = model.features(video, audio, mod)
        for r in RATES:
            out[f"decode_features(rate {r})"] = _times(
                lambda r=r: model.decode_features(feats, r), runs, warmup)
    return out


def face_roi_stage(frames: int = 100) -> dict:
    """Run benchmarks/bench_face_roi.py; its tracking + crop ms/frame on the rendered face."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(HERE / "bench_face_roi.py"), "--frames", str(frames)],
                       capture_output=True, text=True, check=False)
    found = re.search(r"face/ROI stage \(tracking \+ crop\)\s+([\d.]+) ms/frame wall\s+([\d.]+) "
                      r"cpu", p.stdout)
    return {"wall_ms_per_frame": float(found[1]) if found else None,
            "cpu_ms_per_frame": float(found[2]) if found else None,
            "ok": p.returncode == 0 and bool(found), "output": p.stdout.strip(),
            "error": p.stderr.strip()[-500:] if p.returncode else "",
            "seconds": round(time.perf_counter() - t0, 1)}


def viseme_floor(bank: str) -> dict:
    """benchmarks/lipread_floor.py's floor() on the test split (imported by path)."""
    spec = importlib.util.spec_from_file_location("lipread_floor", HERE / "lipread_floor.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.floor(bank, "test")


# ----------------------------------------------------------------------------- tables

def wer_table(q: dict, floor: float | None = None, key: str = "wer",
              rates=RATES) -> list[str]:
    """Markdown rows of `key` (wer, or wer_greedy) per precision x rate x modality."""
    lines = ["| precision | rate | modality | " + " | ".join(CONDITIONS) + " |",
             "|---|---|---|" + "---:|" * len(CONDITIONS)]
    for p in q:
        for r in rates:
            for mod in MODALITIES:
                cell = q[p][mod].get(r)
                if cell is None:
                    continue
                vals = [f"{cell[c][key]:.1f}" if c in cell else "=" for c in CONDITIONS]
                lines.append(f"| {p} | {r} | {mod} | " + " | ".join(vals) + " |")
    if floor is not None:
        lines.append(f"| viseme oracle | - | video | {floor:.1f} | = | = | = |")
    return lines


def speed_table(speed: dict) -> list[str]:
    lines = ["| rate | graph | precision | median ms / 4 s window | p90 ms | model RTF |",
             "|---|---|---|---:|---:|---:|"]
    for r in RATES:
        for (backend, p), by_rate in speed.items():
            b = by_rate.get(r)
            if b is None:
                continue
            graph = {"executorch": ".pte", "onnxruntime": ".onnx"}.get(backend, backend)
            lines.append(f"| {r} | {graph} | {p} | {b['median_ms']:.1f} | {b['p90_ms']:.1f} | "
                         f"{b['rtf']:.4f} |")
    return lines


def eager_table(split: dict) -> list[str]:
    lines = ["| eager stage (torch, 1 thread) | median ms / 4 s window | p90 ms |",
             "|---|---:|---:|"]
    for name, t in split.items():
        lines.append(f"| {name} | {t['median_ms']:.1f} | {t['p90_ms']:.1f} |")
    return lines


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", required=True, help="voice bank directory (with its ROI cache)")
    ap.add_argument("--cache", help="ROI cache directory (default: BANK/lipreader-cache)")
    ap.add_argument("--n", type=int, default=100, help="test GRID utterances (default 100)")
    ap.add_argument("--quick", action="store_true",
                    help="development run: n=8, fewer timing runs")
    ap.add_argument("--weights", help="lip-reader weights (.safetensors; default: the shipped "
                                      "models/lipreader/weights/lipreader.safetensors)")
    ap.add_argument("--artifact-fp32", help="reuse this fp32 cpu export instead of exporting")
    ap.add_argument("--artifact-int8", help="reuse this int8 cpu export instead of exporting")
    ap.add_argument("--export-dir", help="keep the exports here (DIR/lipreader-cpu-fp32, "
                                         "-int8) for --artifact-* reruns; default: a temp dir")
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "executorch"),
                    help="backend of the quality tables (default onnxruntime); the speed "
                         "table times both")
    ap.add_argument("--runs", type=int, default=None,
                    help="timed calls per graph (default 30; --quick 10)")
    ap.add_argument("--skip-speed", action="store_true", help="quality tables only")
    ap.add_argument("--skip-mp4", action="store_true",
                    help="no mp4 rows (the test utterances written as video files and read "
                         "through read_video, the mouth tracker and the crop)")
    ap.add_argument("--out", help="write every figure (and the hypotheses) to this JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.n = 8
    if a.n < 1:
        ap.error(f"--n must be at least 1, got {a.n}")
    a.runs = a.runs or (10 if a.quick else 30)
    if a.runs < 1:
        ap.error(f"--runs must be at least 1, got {a.runs}")
    return a


def run(a, log=print) -> dict:
    from avedge.models.lipreader import data as D
    from avedge.models.lipreader import model as lr
    from avedge.models.lipreader.train import only_synth
    from avedge.runtime.errors import AvedgeError

    t_start = time.perf_counter()
    weights = Path(a.weights) if a.weights else Path(lr.WEIGHTS_FILE)
    if not weights.is_file():
        raise AvedgeError(f"no weights file at {weights}; give --weights FILE.safetensors")
    bank = Path(a.bank)
    cache_dir = Path(a.cache) if a.cache else D.default_cache(bank)
    for name, path in (("--artifact-fp32", a.artifact_fp32), ("--artifact-int8", a.artifact_int8)):
        if path and not (Path(path) / "manifest.json").is_file():
            raise AvedgeError(f"{name} {path} is not an artifact directory (no manifest.json)")
    from avedge.sweep.machine import machine_info

    machine = {**machine_info(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    winfo = weights_info(weights)
    log(f"# lip reader benchmark\nmachine: {machine['cpu']}, {machine['cores']} cpus, load "
        f"average {' '.join(map(str, machine['loadavg_start']))} at start")
    log(f"weights: {weights} sha256 {winfo['sha256'][:16]} steps {winfo['steps']} "
        f"({winfo['train_minutes']} min)")

    test = D.SplitCache.open(cache_dir / "test")
    train = D.SplitCache.open(cache_dir / "train")
    windows = pick(test, a.n)
    piper = pick(only_synth(train, HOLDOUT_SYNTH), a.n)
    if not windows:
        raise AvedgeError(f"no test-split GRID utterances in the cache at {cache_dir / 'test'}")
    log(f"items: {len(windows)} test GRID utterances ({len({w['voice'] for w in windows})} "
        f"voices), {len(piper)} {HOLDOUT_SYNTH} GRID utterances; backend {a.backend}")
    sets = conditions(test, windows)
    piper_sets = conditions(test, piper) if piper else {}

    tmp = tempfile.TemporaryDirectory(prefix="bench-lipreader-")
    export_dir = Path(a.export_dir) if a.export_dir else Path(tmp.name)
    artifacts, export_s = {}, {}
    for p, given in (("fp32", a.artifact_fp32), ("int8", a.artifact_int8)):
        if given:
            artifacts[p] = Path(given)
        else:
            artifacts[p] = export_dir / f"lipreader-cpu-{p}"
            log(f"exporting {p} for cpu ...")
            export_s[p] = round(export(p, weights, artifacts[p]), 1)
            log(f"  {export_s[p]} s")
        made_from = json.loads((artifacts[p] / "manifest.json").read_text()).get(
            "extra", {}).get("weights")
        if made_from not in (None, weights.name):
            log(f"note: the {p} artifact was exported from {made_from}, not {weights.name}")

    log("\n## quality")
    q, qp = {}, {}
    for p in PRECISIONS:
        pipe = open_pipeline(artifacts[p], a.backend)
        log(f"{p} ({pipe.spec.extra.get('weights', '?')}, {a.backend})")
        q[p] = quality(pipe, sets, RATES, MODALITIES, log)
        if piper:
            qp[p] = quality(pipe, piper_sets, (1,), ("audio", "audio-visual"), log)
    mp4 = {}
    if not a.skip_mp4:
        log("fp32, the same utterances as mp4 files through `lipread()`")
        mp4 = video_files(open_pipeline(artifacts["fp32"], a.backend), str(bank), windows,
                          RATES, log)
    try:
        fl = viseme_floor(str(bank))
    except (SystemExit, AvedgeError, OSError) as exc:
        fl = {"wer_floor": None, "error": str(exc)}

    speed, eager, face = {}, {}, {}
    if not a.skip_speed:
        log("\n## speed (one thread)")
        for backend in ("executorch", "onnxruntime"):
            for p in PRECISIONS:
                try:
                    speed[(backend, p)] = graph_speed(artifacts[p], backend, a.runs,
                                                      max(2, a.runs // 10))
                except AvedgeError as exc:
                    log(f"  {backend} {p}: {exc}")
                    continue
                log(f"  {backend} {p}: " + ", ".join(
                    f"rate {r} {b['median_ms']:.1f} ms" for r, b in speed[(backend, p)].items()))
        eager = eager_split(weights, windows[0], a.runs, max(2, a.runs // 10))
        face = face_roi_stage()

    res = {"machine": machine, "weights": winfo, "n": len(windows), "n_piper": len(piper),
           "backend": a.backend, "seed": SEED, "export_seconds": export_s,
           "artifacts": {"fp32": a.artifact_fp32 or "exported", "int8": a.artifact_int8 or
                         "exported"},
           "items": [{"voice": w["voice"], "index": w["index"], "text": " ".join(w["words"])}
                     for w in windows],
           "quality": q, "mp4_fp32": mp4,
           "holdout_synth": {"synth": HOLDOUT_SYNTH, "rate": 1, "wer": qp},
           "viseme_floor": fl,
           "speed": {f"{b}/{p}": v for (b, p), v in speed.items()},
           "eager_split": eager, "face_roi": face,
           "loadavg_end": [round(x, 2) for x in os.getloadavg()],
           "seconds": round(time.perf_counter() - t_start, 1)}
    print_report(res, log)
    tmp.cleanup()
    return res


def print_report(res: dict, log=print) -> None:
    m, w = res["machine"], res["weights"]
    log(f"\n## Lip reader: results\n\nMachine: {m['cpu']}, {m['cores']} cpus, load average "
        f"{' '.join(map(str, m['loadavg_start']))} at start ({' '.join(map(str, res['loadavg_end']))}"
        f" at end). Weights {Path(w['file']).name} sha256 {w['sha256'][:12]}, {w['steps']} steps. "
        f"n = {res['n']} test GRID utterances (held-out voices and faces), backend "
        f"{res['backend']}, {res['seconds']:.0f} s. "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".\n")
    fl = res["viseme_floor"].get("wer_floor")
    log("WER % (corpus-grammar search, as `avedge lipread`). Video-only reading does not hear "
        "the babble: its babble cells repeat the clean figure (=).\n")
    log("\n".join(wer_table(res["quality"], fl)))
    if fl is not None:
        log(f"\nViseme-oracle floor (benchmarks/lipread_floor.py, "
            f"{res['viseme_floor']['sentences']} test GRID sentences): {fl:.1f} % - the WER of "
            f"a reader that sees the exact viseme sequence; video-only rows cannot go below it.")
    if res.get("mp4_fp32"):
        log("\nThe same utterances as mp4 files (512x512, H.264 crf 20, as the corpus writes "
            "its test videos) read by `lipread()` (read_video, mouth tracker, crop, grammar), "
            "fp32, clean:\n")
        rows = ["| modality | " + " | ".join(f"rate {r}" for r in RATES) + " |",
                "|---|" + "---:|" * len(RATES)]
        for mod, by_rate in res["mp4_fp32"].items():
            rows.append(f"| {mod} | " + " | ".join(f"{by_rate[r]['wer']:.1f}" for r in RATES)
                        + " |")
        log("\n".join(rows))
    log("\nGreedy CTC (no lexicon), rate 1:\n")
    log("\n".join(wer_table(res["quality"], key="wer_greedy", rates=(1,))))
    hs = res["holdout_synth"]
    if hs["wer"]:
        log(f"\nHeld-out synthesizer ({hs['synth']}, {res['n_piper']} GRID utterances, rate 1, "
            f"grammar search). {hs['synth']}'s face is a training face: this row tests the unseen "
            f"synthesizer's voice.\n")
        lines = ["| precision | modality | " + " | ".join(CONDITIONS) + " |",
                 "|---|---|" + "---:|" * len(CONDITIONS)]
        for p, by_mod in hs["wer"].items():
            for mod, by_rate in by_mod.items():
                cell = by_rate[1]
                lines.append(f"| {p} | {mod} | " + " | ".join(
                    f"{cell[c]['wer']:.1f}" for c in CONDITIONS) + " |")
        log("\n".join(lines))
    if res["speed"]:
        speed = {tuple(k.split("/")): {int(r): b for r, b in v.items()}
                 for k, v in res["speed"].items()}
        log("\nSpeed, one thread, one 100-frame (4 s) window; model RTF = ms / 4000:\n")
        log("\n".join(speed_table(speed)))
    if res["eager_split"]:
        log("\nWhere the time goes (eager model, same window):\n")
        log("\n".join(eager_table(res["eager_split"])))
    f = res["face_roi"]
    if f:
        if f["ok"]:
            log(f"\nFace/ROI stage (benchmarks/bench_face_roi.py: tracking + crop, rendered "
                f"512x512 corpus face, pinned to one core): {f['wall_ms_per_frame']:.2f} "
                f"ms/frame wall, {f['cpu_ms_per_frame']:.2f} ms/frame cpu, i.e. "
                f"{100 * f['wall_ms_per_frame']:.0f} ms wall / "
                f"{100 * f['cpu_ms_per_frame']:.0f} ms cpu per 4 s window (on a busy machine "
                f"the cpu figure is the closer one to a quiet core's wall time).")
        else:
            log(f"\nFace/ROI stage: bench_face_roi.py failed: {f['error'] or f['output'][-300:]}")


def _json_ready(x):
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if dataclasses.is_dataclass(x):
        return _json_ready(dataclasses.asdict(x))
    return x


def main(argv=None) -> int:
    a = parse_args(argv)
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.fsutil import atomic_write_json

    try:
        res = run(a, log=lambda s: print(s, flush=True))
    except AvedgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.out:
        atomic_write_json(Path(a.out), _json_ready(res), indent=1)
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
