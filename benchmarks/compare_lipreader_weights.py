"""Did a training run help? Two lip-reader weights files on the same windows.

Scores A and B (eager fp32) on the same test-split windows (held-out voices and faces)
per modality and token rate, clean and under babble, and on the held-out synthesizer
(piper, never trained on): greedy CTC, the corpus-lexicon beam and the corpus-grammar
search (what `avedge lipread` reads with), as `avedge train
lipreader --eval-only` scores them. Both see the very same windows, so the difference
between A and B is the run's.

    python benchmarks/compare_lipreader_weights.py --bank BANK --a old.safetensors \
        --b models/lipreader/weights/lipreader.safetensors --n 40 [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import torch
from avedge.models.lipreader import model as lr
from avedge.models.lipreader import train as T
from avedge.runtime.fsutil import atomic_write_json


def windows(bank: str, n: int, babble_db: float, holdout: str,
            video_path: bool = False) -> dict[str, list[dict]]:
    data = T.CacheData(T.TrainConfig(corpus=bank), log=lambda *a: None)
    test = data.split("test")
    clean = T.eval_windows(test, n)
    sets = {"clean": clean, f"babble_{babble_db:g}db": T.with_babble(test, clean, babble_db),
            f"heldout_{holdout}": T.eval_windows(T.only_synth(data.split("train"), holdout), n)}
    if video_path:  # the same windows, their frames through H.264 and the runtime's tracker
        sets["video_path"] = T.eval_windows(data.video_split("test"), n)
    return sets


def score_all(model: lr.LipReader, sets: dict[str, list[dict]]) -> dict:
    from avedge.models.lipreader.lexicon import corpus_constraints

    beams = corpus_constraints()
    out = {}
    for name, ws in sets.items():
        if name == "clean":
            out[name] = T.score(model, ws, lr.RATES, ("video", "audio", "both"), **beams)
        elif name == "video_path":  # the audio is the clean set's: only the video changed
            out[name] = T.score(model, ws, lr.RATES, ("video", "both"), **beams)
        else:  # video-only does not hear the babble; the held-out voice's face is seen
            out[name] = T.score(model, ws, (1,), ("audio", "both"), **beams)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", required=True, help="voice bank with its lipreader-cache")
    p.add_argument("--a", required=True, help="weights before")
    p.add_argument("--b", required=True, help="weights after")
    p.add_argument("--n", type=int, default=40, help="windows per set")
    p.add_argument("--babble-db", type=float, default=-5.0)
    p.add_argument("--holdout", default="piper", help="the synthesizer training never heard")
    p.add_argument("--video-path", action="store_true",
                   help="also the clean windows with their ROIs through H.264 and the "
                        "runtime's mouth tracker (models/lipreader/video_path.py; built "
                        "for the test split on first use)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the scores here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = windows(args.bank, args.n, args.babble_db, args.holdout, args.video_path)
    res = {"conditions": f"{args.n} windows per set: test split (held-out voices and faces), "
                         f"the same under babble of 4 other test voices at {args.babble_db:g} dB, "
                         f"the held-out synthesizer {args.holdout}"
                         + ("; video_path = the clean windows' ROIs through H.264 and the "
                            "runtime's tracker" if args.video_path else "") + "; eager fp32; wer = greedy, "
                         "wer_lexicon = corpus-lexicon beam, wer_grammar = corpus-grammar "
                         "search (what `avedge lipread` reads with)",
           "a": {"weights": args.a, "scores": score_all(lr.load_weights(args.a), sets)},
           "b": {"weights": args.b, "scores": score_all(lr.load_weights(args.b), sets)}}
    for name in sets:
        for mod, rates in res["b"]["scores"][name].items():
            for rate, e in rates.items():
                old = res["a"]["scores"][name][mod][rate]
                print(f"{name:16s} {mod:6s} {rate}: WER (grammar) {100 * old['wer_grammar']:5.1f}"
                      f" -> {100 * e['wer_grammar']:5.1f} %  (lexicon "
                      f"{100 * old['wer_lexicon']:5.1f} -> {100 * e['wer_lexicon']:5.1f}, greedy "
                      f"{100 * old['wer']:5.1f} -> {100 * e['wer']:5.1f})")
    if args.json:
        atomic_write_json(args.json, res, indent=1)
    else:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
