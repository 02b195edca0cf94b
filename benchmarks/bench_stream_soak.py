"""Streaming soak (issue #19, item 6): an hour of audio through the runtime Stream that
`avedge listen` uses, faster than real time, and the same audio through `avedge extract`.

    nice python benchmarks/bench_stream_soak.py                   # 3600 s, shipped weights
    python benchmarks/bench_stream_soak.py --seconds 120 --json soak.json

The audio: a long scene written to a FLOAT wav, 10 s at a time: an enrolled talker
(held-out test-split voices of a voice bank, `--bank`; without one, espeak-ng voices)
speaking in most segments, an interfering talker at 0 dB SIR in most, and noise
(white/pink/brown) at 5 dB SNR always. The stream side is `listen`'s own callback
(DuplexProcessor, `--block` samples per call, 128 as `listen`), fed from the file as a
microphone would, one thread. Every minute of audio it records the process RSS, the
per-chunk model time (Stream.chunk_ms: median, p99) and the per-callback time (median,
p99), so growth in memory or time would show. The file side runs `avedge extract` (a
subprocess, the real CLI) on the same files; the two outputs are compared sample by
sample (listen's output lags by its prefill, removed before comparing), and SI-SDR is
scored per minute so a drift in quality over the hour would show too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from avedge.runtime.audio_io import SAMPLE_RATE as SR
from avedge.runtime.audio_io import resample
from avedge.runtime.pipelines.extraction import DuplexProcessor, Extraction, si_sdr_db

SEGMENT_S = 10  # the scene is built (and written) this much at a time
P_TARGET, P_INTERFERER = 0.8, 0.7  # share of segments where each talker speaks
SIR_DB, SNR_DB = 0.0, 5.0  # the evaluation condition
SPEECH_DBFS = -26.0  # level of each utterance
NOISES = ("white", "pink", "brown")
ESPEAK_TARGET, ESPEAK_OTHERS = "en-us+m3", ("en+f2", "en-gb+m5", "en+f4")
ESPEAK_TEXT = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will meet her.",
    "The birch canoe slid on the smooth planks of the old wooden dock.",
    "Glue the sheet to the dark blue background before the paint dries.",
    "It is easy to tell the depth of a well when the water is still.",
]


# ----------------------------------------------------------------------------- voices

def bank_voices(bank_dir: str, rng) -> tuple[list, list[list], str]:
    """(target utterances, [utterances of each interferer voice], source) from the test
    split of a voice bank: voices no model was trained or validated on."""
    from avedge.models.corpus.voicebank import open_bank

    bank = open_bank(bank_dir)
    voices = [v for v in bank.voices_in("test") if len(bank.by_voice[v]) >= 2]
    if len(voices) < 2:
        raise SystemExit(f"{bank_dir}: {len(voices)} test voice(s) with 2+ utterances; need 2")
    picks = rng.choice(len(voices), size=min(4, len(voices)), replace=False)
    target, others = voices[picks[0]], [voices[i] for i in picks[1:]]
    def load(v):
        return [bank.audio(u) for u in bank.by_voice[v]]

    source = f"voice bank {bank_dir}: target {target}, interferers {', '.join(others)} (test split)"
    return load(target), [load(v) for v in others], source


def espeak_voices(tmp: Path) -> tuple[list, list[list], str]:
    """The same without a bank: espeak-ng speaking fixed sentences, offline."""
    def say(voice: str, i: int, text: str) -> np.ndarray:
        p = tmp / f"espeak-{voice}-{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(p), text], check=True)
        x, rate = sf.read(p, dtype="float32")
        return resample(x, rate, SR)

    target = [say(ESPEAK_TARGET, i, t) for i, t in enumerate(ESPEAK_TEXT)]
    others = [[say(v, i, t) for i, t in enumerate(ESPEAK_TEXT)] for v in ESPEAK_OTHERS]
    source = f"espeak-ng: target {ESPEAK_TARGET}, interferers {', '.join(ESPEAK_OTHERS)}"
    return target, others, source


# ----------------------------------------------------------------------------- the scene

def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (10 ** (dbfs / 20) / (np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-9))


def colored_noise(n: int, kind: str, rng) -> np.ndarray:
    """Unit-RMS white / pink (1/f) / brown (1/f^2) noise."""
    white = rng.standard_normal(n)
    if kind != "white":
        f = np.fft.rfftfreq(n, 1 / SR)
        alpha = {"pink": 1.0, "brown": 2.0}[kind]
        white = np.fft.irfft(np.fft.rfft(white) / np.maximum(f, 20.0) ** (alpha / 2), n=n)
    return (white / np.sqrt(np.mean(white ** 2))).astype(np.float32)


def place(x: np.ndarray, n: int, rng) -> np.ndarray:
    out = np.zeros(n, np.float32)
    x = x[:n]
    off = int(rng.integers(n - len(x) + 1))
    out[off: off + len(x)] = x
    return out


def segments(seconds: int, target: list, others: list[list], rng):
    """Yield (mixture, target) segments of SEGMENT_S s covering `seconds`."""
    n = SEGMENT_S * SR
    noise_rms = 10 ** ((SPEECH_DBFS - SNR_DB) / 20)
    for k in range(-(-seconds // SEGMENT_S)):
        m = min(n, seconds * SR - k * n)
        tgt = np.zeros(m, np.float32)
        if rng.random() < P_TARGET:
            tgt = place(level(target[int(rng.integers(len(target)))], SPEECH_DBFS), m, rng)
        mix = tgt + colored_noise(m, NOISES[k % len(NOISES)], rng) * noise_rms
        if rng.random() < P_INTERFERER:
            voice = others[int(rng.integers(len(others)))]
            u = voice[int(rng.integers(len(voice)))]
            mix += place(level(u, SPEECH_DBFS - SIR_DB), m, rng)
        yield mix.astype(np.float32), tgt


def write_scene(tmp: Path, seconds: int, target: list, others: list[list], seed: int):
    """mixture.wav and target.wav (FLOAT, so the file path reads back exactly what the
    stream gets), and enrollment.wav: up to 5 s of the target's last two utterances (never
    in the scene) at 10 dB SNR."""
    rng = np.random.default_rng([seed, 1])
    target, enroll_utts = target[:-2], target[-2:]
    paths = {k: tmp / f"{k}.wav" for k in ("mixture", "target", "enrollment")}
    peak = 0.0
    with sf.SoundFile(paths["mixture"], "w", SR, 1, "FLOAT") as fm, \
            sf.SoundFile(paths["target"], "w", SR, 1, "FLOAT") as ft:
        for mix, tgt in segments(seconds, target, others, rng):
            fm.write(mix)
            ft.write(tgt)
            peak = max(peak, float(np.abs(mix).max()))
    enroll = np.concatenate([level(u, SPEECH_DBFS) for u in enroll_utts])[: 5 * SR]
    enroll = enroll + colored_noise(len(enroll), "pink", rng) * 10 ** ((SPEECH_DBFS - 10) / 20)
    sf.write(paths["enrollment"], enroll.astype(np.float32), SR, subtype="FLOAT")
    return paths, peak


# ----------------------------------------------------------------------------- the soak

def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def state_bytes(proc: DuplexProcessor) -> int:
    """Everything the stream carries between callbacks: model state, rings, buffered input,
    unread output, listen's output FIFO."""
    st = proc.stream
    return int(sum(a.nbytes for a in st._state.values()) + st._buf.nbytes
               + sum(o.nbytes for o in st._out) + proc._fifo.nbytes
               + sum(r._history.nbytes for r, _ in st._rings))


def pct(x, q) -> float:
    return round(float(np.percentile(x, q)), 4) if len(x) else float("nan")


def soak(ex: Extraction, emb: np.ndarray, paths: dict, out_path: Path, block: int) -> dict:
    """listen's callback fed from the mixture file; its output written (lag removed)."""
    proc = DuplexProcessor(ex, emb, block)
    stream, lag = proc.stream, proc.latency_samples
    minute = 60 * SR
    rows, chunk_ms, call_ms = [], [], []
    fed = seen = dropped = 0
    rest = np.zeros(0, np.float32)  # samples short of a whole block, kept for the next read
    t0 = time.perf_counter()
    rows.append({"minute": 0, "rss_mb": round(rss_mb(), 2), "state_bytes": state_bytes(proc)})
    with sf.SoundFile(paths["mixture"]) as fin, \
            sf.SoundFile(out_path, "w", SR, 1, "FLOAT") as fout:
        while True:
            x = fin.read(SR, dtype="float32")  # a second at a time from disk
            if not len(x):
                break  # a last partial block (if any) is not fed: compare() stops before it
            x = np.concatenate([rest, x])
            whole = len(x) - len(x) % block
            x, rest = x[:whole], x[whole:]
            for s in range(0, whole, block):
                y = proc.process(x[s: s + block])
                call_ms.append(proc.compute_ms[-1])
                new = stream.chunks_run - seen  # chunks this callback ran
                chunk_ms += [stream.chunk_ms[-j] for j in range(new, 0, -1)]
                seen = stream.chunks_run
                if dropped < lag:  # listen's output lags by its prefill: drop it
                    cut = min(lag - dropped, len(y))
                    y, dropped = y[cut:], dropped + cut
                fout.write(y)
                fed += block
                if fed // minute >= len(rows):
                    rows.append({"minute": fed // minute, "rss_mb": round(rss_mb(), 2),
                                 "state_bytes": state_bytes(proc),
                                 "chunk_ms_median": pct(chunk_ms, 50),
                                 "chunk_ms_p99": pct(chunk_ms, 99),
                                 "callback_ms_median": pct(call_ms, 50),
                                 "callback_ms_p99": pct(call_ms, 99),
                                 "wall_s": round(time.perf_counter() - t0, 1)})
                    chunk_ms, call_ms = [], []
    return {"rows": rows, "wall_s": round(time.perf_counter() - t0, 1), "samples_in": fed,
            "lag_samples": lag, "chunks": stream.chunks_run, **proc.stats()}


def file_path(paths: dict, out: Path, artifact: str, backend: str) -> dict:
    """`avedge extract` on the same files, one thread, in its own process."""
    cmd = [sys.executable, "-m", "avedge", "extract", "--enroll", str(paths["enrollment"]),
           "--input", str(paths["mixture"]), "--out", str(out), "--artifact", artifact,
           "--backend", backend, "--threads", "1", "--json"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"avedge extract failed:\n{r.stderr}")
    report = json.loads(r.stdout[r.stdout.index("{"):])
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return report


def compare(paths: dict, streamed: Path, filed: Path) -> dict:
    """Max |stream - file| over the samples both have, and SI-SDR per minute (file output
    vs the target; the mixture's for the improvement)."""
    minute = 60 * SR
    max_diff, differing, n = 0.0, 0, 0
    per_minute = []
    with sf.SoundFile(streamed) as fs, sf.SoundFile(filed) as ff, \
            sf.SoundFile(paths["mixture"]) as fm, sf.SoundFile(paths["target"]) as ft:
        while True:
            a, b = fs.read(minute, dtype="float32"), ff.read(minute, dtype="float32")
            m, t = fm.read(minute, dtype="float32"), ft.read(minute, dtype="float32")
            if not len(b):
                break
            k = min(len(a), len(b))
            d = np.abs(a[:k] - b[:k])
            max_diff = max(max_diff, float(d.max()) if k else 0.0)
            differing += int(np.count_nonzero(d))
            n += k
            if np.abs(t).max() > 0:
                before, after = si_sdr_db(m, t), si_sdr_db(b, t)
                per_minute.append({"minute": len(per_minute) + 1, "before_db": round(before, 2),
                                   "after_db": round(after, 2)})
    return {"compared_samples": n, "max_abs_diff": max_diff, "differing_samples": differing,
            "si_sdr_per_minute": per_minute}


def growth_per_hour(rows: list[dict], key: str, skip: int = 1) -> float | None:
    """Least-squares slope of `key` over the minutes after `skip` (warm-up), per hour;
    None under 2 such minutes."""
    pts = [(r["minute"], r[key]) for r in rows if r["minute"] > skip and key in r]
    if len(pts) < 2:
        return None
    m, v = np.array(pts, float).T
    return round(float(np.polyfit(m, v, 1)[0] * 60), 4)


def shipped_artifact() -> str:
    """The shipped weights exported for cpu (cached), found in another process so that
    this one never imports torch, as `listen --artifact` would not."""
    code = "from avedge.cli.extract_cmd import default_artifact; print(default_artifact('cpu'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=3600, help="audio to stream (default 3600)")
    ap.add_argument("--bank", default=os.environ.get("AVEDGE_VOICEBANK"),
                    help="voice bank for the talkers (default $AVEDGE_VOICEBANK; none: espeak-ng)")
    ap.add_argument("--artifact", help="speech-extractor artifact (default: shipped, cpu)")
    ap.add_argument("--backend", help="backend (default: the artifact's first, as listen)")
    ap.add_argument("--block", type=int, default=128, help="samples per callback (listen: 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the wavs in this folder (default: a temporary one)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    if args.seconds < 60:
        raise SystemExit("--seconds must be at least 60 (figures are per minute of audio)")

    from avedge.cli.common import quiet_native_logs

    quiet_native_logs()
    artifact = args.artifact or shipped_artifact()
    ex = Extraction.from_artifact(artifact, backend=args.backend, threads=1)
    backend = ex.extractor.backend
    tmp_ctx = tempfile.TemporaryDirectory(prefix="soak-") if not args.keep else None
    tmp = Path(args.keep or tmp_ctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        rng = np.random.default_rng([args.seed, 0])
        target, others, source = bank_voices(args.bank, rng) if args.bank else \
            espeak_voices(tmp)
        t0 = time.perf_counter()
        paths, peak = write_scene(tmp, args.seconds, target, others, args.seed)
        print(f"scene: {args.seconds} s ({source}); peak {peak:.2f}; written in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        del target, others
        emb = ex.enroll(sf.read(paths["enrollment"], dtype="float32")[0])
        streamed = soak(ex, emb, paths, tmp / "streamed.wav", args.block)
        print(f"stream: {streamed['wall_s']} s wall for {args.seconds} s of audio", file=sys.stderr)
        filed = file_path(paths, tmp / "extracted.wav", artifact, backend)
        cmp = compare(paths, tmp / "streamed.wav", tmp / "extracted.wav")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    rows = streamed.pop("rows")
    sdr = cmp.pop("si_sdr_per_minute")
    report = {
        "machine": {"cpu": f"{os.cpu_count()} vCPU {platform.processor() or platform.machine()}",
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
        "artifact": artifact, "backend": backend, "threads": 1, "block": args.block,
        "audio_s": args.seconds, "source": source,
        "stream": streamed, "file_path": filed, "stream_vs_file": cmp,
        "rss_mb": {"after_load": rows[0]["rss_mb"], "minute_1": rows[1]["rss_mb"],
                   "end": rows[-1]["rss_mb"], "max": max(r["rss_mb"] for r in rows),
                   "growth_mb_per_hour": growth_per_hour(rows, "rss_mb")},
        "state_bytes": sorted({r["state_bytes"] for r in rows}),
        "chunk_ms_median_growth_per_hour": growth_per_hour(rows, "chunk_ms_median"),
        "si_sdr": {"minutes_scored": len(sdr),
                   "mean_before_db": round(float(np.mean([r["before_db"] for r in sdr])), 2),
                   "mean_after_db": round(float(np.mean([r["after_db"] for r in sdr])), 2),
                   "first": sdr[0] if sdr else None, "last": sdr[-1] if sdr else None},
        "per_minute": rows, "si_sdr_per_minute": sdr,
    }
    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    summary = {k: report[k] for k in ("backend", "audio_s", "rss_mb", "state_bytes",
                                      "chunk_ms_median_growth_per_hour", "stream_vs_file",
                                      "si_sdr")}
    print(json.dumps({**summary, "stream": streamed, "file_path": filed}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
