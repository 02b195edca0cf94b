"""avedge demo --out DIR: the main job end to end, one step per capability.

Each step is a function `step(ctx) -> None` in STEPS; it prints what it did and the
numbers that matter, and leaves its files under ctx.out. Steps share ctx (a dict) for
things built once, such as the demo voice bank.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from avedge.cli.common import print_table, quiet_native_logs


def register(sub):
    p = sub.add_parser("demo", help="export, run and benchmark the reference models")
    p.add_argument("--out", default="demo-out", help="directory for the demo's artifacts")
    p.add_argument("--runs", type=int, default=200)
    p.set_defaults(func=run)


def run(args) -> int:
    quiet_native_logs()
    ctx = {"out": Path(args.out), "runs": args.runs}
    ctx["out"].mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(STEPS, 1):
        print(f"\n[{i}/{len(STEPS)}] {step.__doc__.strip().splitlines()[0]}")
        t0 = time.perf_counter()
        step(ctx)
        print(f"    ({time.perf_counter() - t0:.1f} s)")
    return 0


def export_and_stream(ctx) -> None:
    """Export tiny-stream (streaming causal conv) for cpu; stream it on both backends."""
    import torch

    from avedge.api import export
    from avedge.models.registry import get_family
    from avedge.runtime import load
    from avedge.runtime.bench import bench_session

    art = export("tiny-stream", "cpu", ctx["out"] / "tiny-stream-cpu")
    module = get_family("tiny-stream").build()
    for fmt, p in art.manifest["parity"].items():
        print(f"    {fmt:5s} parity vs eager on {p['backend']}: max abs err {p['max_abs_err']:.1e}")
    signal = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    whole = module.forward_full(torch.from_numpy(signal)).detach().numpy()
    rows = []
    for backend in ("executorch", "onnxruntime"):
        stream = load(art.path, backend=backend).stream()
        pieces = []
        for i in range(0, signal.shape[-1], 100):  # 100-sample blocks, as a sound card gives
            stream.accept(signal[0, i:i + 100])
            pieces.append(stream.read())
        pieces.append(stream.finish())
        err = float(np.abs(np.concatenate(pieces, -1) - whole).max())
        print(f"    {backend:12s} streamed 1 s == whole-signal eager: max abs err {err:.1e}")
        r = bench_session(load(art.path, backend=backend), runs=ctx["runs"])
        rows.append({**r, "median_ms": f"{r['median_ms']:.4f}", "p90_ms": f"{r['p90_ms']:.4f}"})
    print("    one chunk (8 ms of audio) per call:")
    print_table(rows, ["backend", "median_ms", "p90_ms", "runs"])


def kernels(ctx) -> None:
    """Custom kernels: joint audio-motion attention, fused flow steps, mouth warp vs PyTorch."""
    from avedge.cpp_kernels import bench

    results = bench.run(rounds=3)
    rows = [{"op": name, "ours_ms": f"{r['ours_ms']:.3f}", "baseline_ms": f"{r['baseline_ms']:.3f}",
             "speedup": f"{r['speedup']:.2f}x", "baseline": r["baseline"]}
            for name, r in results.items() if name != "machine"]
    print_table(rows, ["op", "ours_ms", "baseline_ms", "speedup", "baseline"])


def corpus(ctx) -> None:
    """Synthetic audio-visual corpus: a small voice bank, two test-split utterances."""
    from avedge.models.corpus import voicebank, writer
    from avedge.models.corpus.check import check_corpus
    from avedge.models.corpus.voices import small_bank_voices

    bank_dir = ctx["out"] / "voicebank"
    voices = ["piper:joe"] + small_bank_voices()
    bank = voicebank.build_bank(bank_dir, voices=voices, n_per_voice={"piper": 4, "espeak": 3},
                                seed=0)  # resumes: a second demo run reuses it
    ctx["bank_dir"] = bank_dir
    print(f"    voice bank {bank_dir}: {len(bank.by_voice)} voices, {len(bank.utts)} utterances")
    out = ctx["out"] / "corpus"
    writer.write_corpus(out, 2, seed=0, split="test", bank_dir=bank_dir, video=True)
    problems, summary = check_corpus(out)
    print(f"    wrote {out}: {summary['utterances']} utterances (wav, 88x88 mouth ROI npz, "
          f"json with phone timings and lips-pose, mp4 with audio); check: "
          f"{'ok' if not problems else problems}")


def speech_extraction(ctx) -> None:
    """Speech extraction: the shipped extractor on held-out synthetic and real recorded voices.

    Mixtures of a talker, an interfering talker at 0 dB SIR and noise at 5 dB SNR, each
    streamed in 8 ms chunks; the extractor hears only the voice of a noisy enrollment clip.
    The mean SI-SDR improvement over 6 mixtures of held-out synthetic voices (the demo
    bank's test split) and 6 of real people recorded by Debian packages, reserved for
    evaluation (never trained on); one example's wavs to listen to."""
    from avedge.api import export
    from avedge.cli.extract_cmd import demo as extraction_demo

    art = ctx["out"] / "speech-extractor-cpu"
    export("speech-extractor", "cpu", art)
    r = extraction_demo(ctx["out"] / "speech-extraction", artifact=art, bank_dir=ctx["bank_dir"])
    ex = r["example"]
    print(f"    {r['dir']}: mixture.wav, enrollment.wav, reference.wav, extracted.wav "
          f"({ex['voice']}: SI-SDR {ex['si_sdr_before_db']:+.2f} -> "
          f"{ex['si_sdr_after_db']:+.2f} dB)")
    names = {"synthetic": "synthetic, held-out voices", "real": "real recorded voices"}
    rows = [{"set": names[name], "mixtures": s["mixtures"], "voices": len(s["voices"]),
             "before_db": f"{s['before_db']:+.2f}", "after_db": f"{s['after_db']:+.2f}",
             "si_sdri_db": f"{s['si_sdri_db']:+.2f}",
             "worst_db": f"{s['worst_si_sdri_db']:+.2f}",
             "below_input": s["below_input"]} for name, s in r["sets"].items()]
    print("    SI-SDR improvement, mean over each set (worst: the lowest mixture's):")
    print_table(rows, ["set", "mixtures", "voices", "before_db", "after_db", "si_sdri_db",
                       "worst_db", "below_input"])
    for name, why in r["skipped"].items():
        print(f"    {names[name]}: not scored ({why})")
    s = r["sets"]["synthetic"]
    print(f"    ({s['chunks']} chunks of 8 ms on the synthetic set, compute median "
          f"{s['compute_ms_median']:.3f} ms, real-time factor {s['rtf']:.3f})")


def compression_sweep(ctx) -> None:
    """Compression sweep: the extractor under 3 recipes, accuracy vs latency vs size.

    Each recipe is exported for cpu (onnxruntime), loaded by the runtime, scored (SI-SDRi
    on 3 val mixtures of the demo's bank) and timed, each in its own process; `avedge
    sweep` does the same for any recipes, targets and backends."""
    import os

    from avedge.sweep import Sweep, run_sweep

    # Fixed settings (not --runs): a second demo run resumes the folder, keeping its trials.
    sweep = Sweep("speech-extractor", ["fp32", "int8", "lowrank-0.5"], ["cpu"], ["onnxruntime"],
                  eval_n=3, runs=100, warmup=10)
    old = os.environ.get("AVEDGE_VOICEBANK")
    os.environ["AVEDGE_VOICEBANK"] = str(Path(ctx["bank_dir"]).resolve())  # trials inherit it
    try:
        summary = run_sweep(sweep, ctx["out"] / "sweep", progress=False)
    finally:
        if old is None:
            os.environ.pop("AVEDGE_VOICEBANK", None)
        else:
            os.environ["AVEDGE_VOICEBANK"] = old
    rows = []
    for r in summary["trials"]:
        value = (r.get("metric") or {}).get("value")
        ok = r["status"] == "ok"
        rows.append({"recipe": r["recipe"], "status": r["status"],
                     "si_sdri_db": "-" if value is None else f"{value:+.2f}",
                     "median_ms": f"{r['latency_median_ms']:.3f}" if ok else "-",
                     "size_kib": f"{r['size_bytes'] / 1024:.0f}" if ok else "-",
                     "pareto": "*" if r["trial_id"] in summary["pareto_front"] else ""})
    print_table(rows, ["recipe", "status", "si_sdri_db", "median_ms", "size_kib", "pareto"])
    for r in summary["trials"]:
        if r["status"] != "ok":
            print(f"    {r['recipe']}: {r.get('reason') or r.get('error')}")
    print(f"    report: {summary['files']['report.html']} (and pareto.png, results.csv)")


def lip_reading(ctx) -> None:
    """Lip reading: a test-split video read with and without its audio, at token rates 1 and 4.

    A held-out voice and face say a GRID command; the shipped lip reader (one set of
    weights for video, audio or both) reads the mp4 through the runtime: decode, face and
    mouth tracking, 88x88 mouth ROIs, the model at the chosen token rate, the best sentence
    of the corpus grammar."""
    import json

    import jiwer

    from avedge.cli.common import default_artifact
    from avedge.models.corpus import writer
    from avedge.runtime.pipelines.lipread import lipread

    out = ctx["out"] / "lip-reading"
    writer.write_corpus(out, 1, seed=0, split="test", bank_dir=ctx["bank_dir"], video=True,
                        kind="grid")
    meta = json.loads(next((out / "test").glob("*.json")).read_text())
    video = out / "test" / f"{meta['id']}.mp4"
    ref = " ".join(meta["text"].lower().replace(".", "").split())
    art = default_artifact("lipreader", "cpu")
    print(f"    {video} ({meta['voice']}, a face variation never trained on): \"{ref}\"")
    rows = []
    for rate in (1, 4):
        for use_audio in (True, False):
            r = lipread(art, video, rate=rate, use_audio=use_audio)
            rows.append({"rate": rate, "modality": r["modality"], "read": r["text"],
                         "wer_%": f"{100 * jiwer.wer(ref, r['text'] or '-'):.0f}",
                         "model_ms": f"{r['ms']['model']:.0f}",
                         "face_roi_ms": f"{r['ms']['face_roi']:.0f}", "rtf": f"{r['rtf']:.3f}"})
    print_table(rows, ["rate", "modality", "wer_%", "read", "model_ms", "face_roi_ms", "rtf"])


def lip_sync(ctx) -> None:
    """Lip sync: the demo photo speaks a test-split sentence into an mp4, and is read back.

    The face is found and framed, the shipped lips-pose model turns the audio into mouth
    poses (flow matching over joint audio-motion attention, the sampler inside the
    graph), the face renderer draws each pose on the mouth crop; H.264 + AAC, written
    atomically. The lip reader then reads the generated video without its audio (the
    round trip)."""
    import jiwer
    from PIL import Image

    from avedge.cli.common import default_artifact
    from avedge.cli.lipsync_cmd import lipsync
    from avedge.models.corpus.face import default_photo
    from avedge.models.corpus.voicebank import open_bank
    from avedge.models.corpus.writer import write_wav
    from avedge.runtime.pipelines.lipread import lipread

    out = ctx["out"] / "lip-sync"
    out.mkdir(parents=True, exist_ok=True)
    bank = open_bank(ctx["bank_dir"])
    voice = next(v for v in bank.voices_in("test", None)
                 if any(u.kind == "grid" for u in bank.by_voice[v]))
    utt = next(u for u in bank.by_voice[voice] if u.kind == "grid")
    photo, wav, mp4 = out / "photo.png", out / "speech.wav", out / "talking.mp4"
    Image.fromarray(default_photo()).save(photo)
    write_wav(wav, bank.audio(utt))
    r = lipsync(photo, wav, mp4, size=256, backend="onnxruntime")  # the CLI's default
    ms = r["ms_per_frame"]
    print(f"    {mp4}: {voice} says \"{utt.text}\" ({r['audio_s']:.1f} s, {r['frames']} frames "
          f"at 256x256)")
    print(f"    {r['fps_compute']:.0f} FPS compute (per frame: pose {ms['pose']:.2f} ms, render "
          f"{ms['render']:.2f} ms, paste {ms['paste']:.2f} ms; onnxruntime)")
    ref = " ".join(utt.text.lower().replace(".", "").split())
    read = lipread(default_artifact("lipreader", "cpu"), mp4, use_audio=False, rate=1)["text"]
    print(f"    round trip, the lip reader on the generated video (no audio): \"{read}\" "
          f"(WER {100 * jiwer.wer(ref, read or '-'):.0f} %)")


STEPS = [export_and_stream, kernels, corpus, speech_extraction, lip_reading, lip_sync,
         compression_sweep]
