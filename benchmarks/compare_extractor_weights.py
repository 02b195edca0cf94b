"""Did a training run help? Two extractor weights files on the same issue #4 mixtures.

Scores A and B on the eval sets of `avedge train speech-extractor --eval-only` (held-out
voices, the held-out synthesizer; with a talker and noise only) and prints, per set, each
one's mean SI-SDRi and the *paired* difference B - A with its standard error: both see
the very same mixtures, so the difference is far tighter than either mean's spread.

    python benchmarks/compare_extractor_weights.py --a old.safetensors \
        --b models/speech_extractor/weights/speech_extractor_df.safetensors --n 100 [--json out.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from avedge.models.common.metrics import standard_error
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from avedge.runtime.fsutil import atomic_write_json


def compare(a: se.Extractor, b: se.Extractor, sets: dict[str, list[dict]]) -> dict:
    out = {}
    for name, examples in sets.items():
        a_out, mix = tr.si_sdr_scores(a, examples)
        b_out, _ = tr.si_sdr_scores(b, examples)
        diff = b_out - a_out
        out[name] = {"n": len(examples),
                     "a_si_sdri_db": round(float((a_out - mix).mean()), 3),
                     "b_si_sdri_db": round(float((b_out - mix).mean()), 3),
                     "b_minus_a_db": round(float(diff.mean()), 3),
                     "b_minus_a_se_db": round(standard_error(diff), 3),
                     "b_better_share": round(float((diff > 0).float().mean()), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="weights (.safetensors) to compare against")
    ap.add_argument("--b", default=str(se.WEIGHTS_FILE), help="weights (default: shipped)")
    ap.add_argument("--corpus", default=None, help="voice bank (default: the corpus default)")
    ap.add_argument("--n", type=int, default=100, help="mixtures per set")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from avedge.models.corpus.voicebank import default_bank_dir

    cfg = tr.TrainConfig(corpus=args.corpus or str(default_bank_dir()))
    a, b = se.load_weights(args.a), se.load_weights(args.b)  # bad files fail before the bank
    data = tr.CorpusData(cfg)
    sets = tr.eval_sets(data, args.n, cfg.holdout_synth)
    sets.update({f"{k}_noise_only": v for k, v in tr.eval_sets(
        data, args.n, cfg.holdout_synth, noise_only=True).items()})
    res = compare(a, b, sets)
    print("| set | n | A SI-SDRi | B SI-SDRi | B - A (paired) | B better |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in res.items():
        print(f"| {name} | {r['n']} | {r['a_si_sdri_db']:+.2f} | {r['b_si_sdri_db']:+.2f} | "
              f"{r['b_minus_a_db']:+.2f} ± {r['b_minus_a_se_db']:.2f} | "
              f"{100 * r['b_better_share']:.0f} % |")
    if args.json:
        atomic_write_json(Path(args.json), {"a": args.a, "b": args.b, "sets": res}, indent=1)


if __name__ == "__main__":
    main()
