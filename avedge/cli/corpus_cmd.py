"""`avedge corpus`: build the voice bank, write a synthetic audio-visual corpus, check one.

    avedge corpus --build-bank [DIR] [--seed 0]            # clean utterances + timings, cached
    avedge corpus --out DIR --n 100 [--seed S] [--split train|val|test] [--video]
                  [--kind grid|free]
    avedge corpus --check DIR
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("corpus", help="synthetic audio-visual speech corpus",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    act = p.add_mutually_exclusive_group(required=True)
    act.add_argument("--out", help="write a corpus into this directory")
    act.add_argument("--check", metavar="DIR", help="validate a corpus and print a summary")
    act.add_argument("--build-bank", nargs="?", const="", metavar="DIR",
                     help="build (or resume) a voice bank; default $AVEDGE_VOICEBANK or "
                          "~/.cache/avedge/voicebank")
    p.add_argument("--n", type=int, default=10, help="utterances to write (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--bank", help="voice bank directory (default: the cached bank)")
    p.add_argument("--holdout-synth", choices=["piper", "kokoro", "espeak"],
                   help="hold a whole synthesizer out: all its voices form the test split")
    p.add_argument("--video", action="store_true", help="also write an mp4 per utterance")
    p.add_argument("--kind", choices=["grid", "free"],
                   help="only GRID-grammar commands (what lip reading is scored on) or only "
                        "free sentences (default: both)")
    p.add_argument("--synths", default="piper,espeak,kokoro",
                   help="synthesizers for --build-bank (comma-separated); festival,klettres "
                        "are real recorded people (Debian festvox-* voices, klettres-data)")
    p.add_argument("--n-per-voice", metavar="SYNTH=N,...",
                   help="utterances per voice for --build-bank (default piper=200,kokoro=8,"
                        "espeak=4)")
    p.add_argument("--max-voices", metavar="SYNTH=N,...",
                   help="cap voices per synthesizer for --build-bank")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run)


def _kv(text: str | None, what: str) -> dict | None:
    from avedge.runtime.errors import AvedgeError

    if not text:
        return None
    out = {}
    for item in text.split(","):
        k, _, v = item.partition("=")
        if not v.isdigit():
            raise AvedgeError(f"--{what} wants SYNTH=N,... (e.g. kokoro=8); got {item!r}")
        out[k.strip()] = int(v)
    return out


def run(args) -> int:
    from avedge.runtime.errors import AvedgeError

    say = (lambda s: None) if args.quiet else print
    if args.check:
        from avedge.models.corpus.check import check_corpus

        problems, summary = check_corpus(args.check)
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
        if problems:
            for pr in problems[:20]:
                print(f"  {pr}")
            more = len(problems) - 20
            raise AvedgeError(f"{len(problems)} problem(s) in {args.check}"
                              + (f" ({more} more not shown)" if more > 0 else ""))
        print("ok")
        return 0
    if args.build_bank is not None:
        from avedge.models.corpus.voicebank import build_bank, default_bank_dir
        from avedge.models.corpus.voices import ALL_SYNTHS

        out = args.build_bank or args.bank or str(default_bank_dir())
        unknown = sorted(set(args.synths.split(",")) - set(ALL_SYNTHS))
        if unknown:
            raise AvedgeError(f"unknown synthesizer(s) {', '.join(unknown)} in --synths; "
                              f"available: {', '.join(ALL_SYNTHS)}")
        bank = build_bank(out, n_per_voice=_kv(args.n_per_voice, "n-per-voice"),
                          seed=args.seed, synths=tuple(args.synths.split(",")),
                          max_voices=_kv(args.max_voices, "max-voices"), progress=say)
        for synth, d in bank.info().get("synths", {}).items():
            print(f"{synth}: {d}")
        print(f"bank: {out} ({len(bank.voices)} voices, {len(bank.utts)} utterances)")
        return 0
    from avedge.models.corpus.writer import write_corpus

    m = write_corpus(args.out, args.n, seed=args.seed, split=args.split, bank_dir=args.bank,
                     holdout_synth=args.holdout_synth, video=args.video, progress=say,
                     kind=args.kind)
    print(f"wrote {m['n']} utterances ({m['split']}) to {args.out}")
    return 0
