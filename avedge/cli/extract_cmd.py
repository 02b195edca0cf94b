"""avedge extract --enroll E.wav --input M.wav --out O.wav [--artifact DIR] [--reference R.wav] [--json]

Hear only the enrolled talker: the enrollment (1-5 s of them, noisy is fine) gives a
speaker embedding; the mixture then streams through the extractor in 8 ms chunks
(the same runtime Stream as `avedge listen`). Without --artifact, the shipped weights
are exported once for the `cpu` target and cached (~/.cache/avedge/artifacts).

Files: any sample rate, channel count (averaged to mono) and common bit depth
(8/16/24/32-bit PCM, float). The output is mono at the input's rate and bit depth,
written atomically. Refused with a one-line error: missing, unreadable or empty files,
NaN/inf samples, an enrollment under 1 s or silent. Accepted with a warning: clipped
input. A silent mixture gives a silent output. Longer enrollments: the loudest 5 s.

--json prints {chunks, compute_ms_median, compute_ms_p90, rtf} and si_sdr_db (output
vs --reference, at 16 kHz) when a reference is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avedge.cli import common
from avedge.cli.common import print_json, quiet_native_logs
from avedge.runtime.pipelines.extraction import DEFAULT_AMBIENT_DB, check_ambient_db

CLIP_WARN = 0.001  # warn when more than 0.1 % of samples are clipped
FAMILY = "speech-extractor"


def register(sub):
    p = sub.add_parser("extract", help="keep only the enrolled talker's voice in a recording",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--enroll", required=True, help="1-5 s of the target talker (wav/flac/ogg)")
    p.add_argument("--input", required=True, help="the mixture to clean")
    p.add_argument("--out", required=True, help="output file (.wav/.flac/.ogg)")
    p.add_argument("--artifact", help="speech-extractor artifact directory "
                                      "(default: the shipped weights, exported for cpu)")
    p.add_argument("--reference", help="clean target speech, to report si_sdr_db")
    p.add_argument("--backend", help="backend (default: the artifact's first available)")
    p.add_argument("--threads", type=int, help="threads (default: the target's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--ambient-db", default=str(DEFAULT_AMBIENT_DB), metavar="DB",
                   help="mix the untouched input back at this level under the extracted "
                        "voice (some of the room, and a floor when the target is turned "
                        "down); 'off' for the extracted voice alone (default %(default)s)")

    p.set_defaults(func=run)


def default_artifact(target: str = "cpu", weights: str | None = None) -> Path:
    """The shipped (or given) weights exported for `target`, cached (cli/common.py)."""
    return common.default_artifact(FAMILY, target, weights)


def export_family(target: str, out, weights: str | None = None, recipe: str | None = None):
    """Both graphs of the family into one composite artifact (see `avedge export`)."""
    from avedge.api import export

    return export(FAMILY, target, out, recipe=recipe, weights=weights)


def warn_clipping(clip, what: str) -> None:
    if clip.clipped_fraction > CLIP_WARN:
        print(f"avedge: warning: {what} is clipped ({clip.clipped_fraction:.1%} of samples at "
              f"full scale); extraction quality will suffer", file=sys.stderr)


def run(args) -> int:
    quiet_native_logs()
    ambient_db = check_ambient_db(args.ambient_db)  # before any file is read
    from avedge.runtime.audio_io import output_subtype, read_audio, write_audio
    from avedge.runtime.pipelines.extraction import Extraction, si_sdr_db

    enroll = read_audio(args.enroll, what="enrollment")
    mix = read_audio(args.input, what="input")
    ref = read_audio(args.reference, what="reference") if args.reference else None
    out_path = Path(args.out)
    if not out_path.parent.is_dir():
        from avedge.runtime.errors import InputError
        raise InputError(f"output folder {str(out_path.parent)!r} does not exist")
    warn_clipping(enroll, "the enrollment")
    warn_clipping(mix, "the input")
    artifact = args.artifact or default_artifact("cpu")
    ex = Extraction.from_artifact(artifact, backend=args.backend, threads=args.threads,
                                  ambient_db=ambient_db)
    quiet_native_logs()  # again: a backend that imported torch reset its loggers
    emb = ex.enroll(enroll.samples)
    res = ex.process(mix.samples, emb)
    write_audio(out_path, res.samples, ex.sample_rate, rate=mix.source_rate,
                subtype=output_subtype(mix.subtype))
    report = res.stats(ex.sample_rate)
    if ref is not None:
        report["si_sdr_db"] = round(si_sdr_db(res.samples, ref.samples), 3)
    if args.json:
        print_json(report)
    else:
        extra = f", SI-SDR {report['si_sdr_db']:.2f} dB vs reference" if ref is not None else ""
        print(f"wrote {out_path} ({mix.seconds:.2f} s, {report['chunks']} chunks of "
              f"{ex.chunk} samples; compute median {report['compute_ms_median']:.3f} ms, "
              f"p90 {report['compute_ms_p90']:.3f} ms per chunk, RTF {report['rtf']:.3f}{extra})")
    return 0


DEMO_SYNTHETIC = 6  # test-split mixtures of the demo bank (held-out synthetic voices)
DEMO_REAL = 6  # mixtures of reserved real recorded speakers (models/corpus/real_eval.py)


def score_mixtures(ex, mixtures: list[dict]) -> dict:
    """Each mixture enrolled and streamed through the runtime -> SI-SDR before and after
    (dB) per mixture, their means, the mean improvement, the worst one and how many came
    out below their input, plus the compute stats of every chunk."""
    import numpy as np

    from avedge.runtime.pipelines.extraction import si_sdr_db

    rows, chunk_ms, outputs = [], [], []
    for m in mixtures:
        res = ex.process(m["mixture"], ex.enroll(m["enrollment"]))
        before, after = si_sdr_db(m["mixture"], m["target"]), si_sdr_db(res.samples, m["target"])
        rows.append({"voice": m["voice"], "before_db": before, "after_db": after,
                     "si_sdri_db": after - before})
        chunk_ms += res.chunk_ms
        outputs.append(res.samples)
    gains = [r["si_sdri_db"] for r in rows]
    audio_s = sum(len(m["mixture"]) for m in mixtures) / ex.sample_rate
    return {"mixtures": len(rows), "voices": sorted({r["voice"] for r in rows}),
            "before_db": round(float(np.mean([r["before_db"] for r in rows])), 2),
            "after_db": round(float(np.mean([r["after_db"] for r in rows])), 2),
            "si_sdri_db": round(float(np.mean(gains)), 2),
            "worst_si_sdri_db": round(float(np.min(gains)), 2),
            "below_input": sum(g < 0 for g in gains),
            "per_mixture": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                            for r in rows],
            "outputs": outputs, "chunks": len(chunk_ms),
            "compute_ms_median": round(float(np.median(chunk_ms)), 4),
            "compute_ms_p90": round(float(np.percentile(chunk_ms, 90)), 4),
            "rtf": round(float(np.sum(chunk_ms)) / 1e3 / audio_s, 4)}


def demo(out_dir, artifact=None, seed: int = 1234, bank_dir=None,
         n_synthetic: int = DEMO_SYNTHETIC, n_real: int = DEMO_REAL) -> dict:
    """The `avedge demo` step: the mean SI-SDRi over test mixtures (talker at 0 dB SIR,
    noise at 5 dB SNR, noisy enrollment) of two sets: `n_synthetic` from the bank's test
    split (held-out voices) and `n_real` of real recorded speakers reserved for
    evaluation. Writes the first synthetic mixture's mixture/enrollment/reference/extracted
    wavs to out_dir. -> {"dir", "example": its voice and SI-SDR before/after, "sets":
    {name: score_mixtures(...) without outputs}, "skipped": {name: why}}; the real set is
    skipped (with the reason) where its Debian packages are missing."""
    from avedge.models.corpus.mixtures import eval_mixtures
    from avedge.models.corpus.voicebank import default_bank_dir
    from avedge.runtime.audio_io import write_audio
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.pipelines.extraction import Extraction

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex = Extraction.from_artifact(artifact or default_artifact("cpu"))
    quiet_native_logs()
    mixtures = {"synthetic": eval_mixtures(bank_dir or default_bank_dir(), split="test",
                                           n=n_synthetic, seed=seed)}
    skipped = {}
    if n_real:
        from avedge.models.corpus.real_eval import real_mixtures

        try:  # the same condition as eval_mixtures: one talker at 0 dB, noise at 5 dB
            mixtures["real"] = real_mixtures(n=n_real, seed=seed, sir_db=0.0, snr_db=5.0)
        except AvedgeError as exc:  # its Debian packages missing: say so, score the rest
            skipped["real"] = str(exc)
    sets = {name: score_mixtures(ex, ms) for name, ms in mixtures.items()}
    first, first_out = mixtures["synthetic"][0], sets["synthetic"]["outputs"][0]
    for name, x in (("mixture", first["mixture"]), ("enrollment", first["enrollment"]),
                    ("reference", first["target"]), ("extracted", first_out)):
        write_audio(out / f"{name}.wav", x, ex.sample_rate)
    for s in sets.values():
        del s["outputs"]
    example = sets["synthetic"]["per_mixture"][0]
    return {"dir": str(out), "example": {"voice": first["voice"],
                                         "si_sdr_before_db": example["before_db"],
                                         "si_sdr_after_db": example["after_db"]},
            "sets": sets, "skipped": skipped}
