"""The floor the renderer allows lip reading: an oracle that sees the exact viseme sequence.

The corpus renders a mouth from visemes (models/corpus/visemes.py), and distinct
phonemes share a viseme (p/b/m, f/v, t/d/l, s/z, ...), so some words of the GRID grammar
look identical (the letters "b" and "p", "d" and "t"...). This oracle is told each
word's viseme string exactly (consecutive repeats merged, as a mouth shows them) and the
grammar slot it fills; it picks uniformly among the slot's words that can produce that
viseme string (any pronunciation the synthesizers gave that word in the training split).
Its expected word error rate is the floor a video-only reader of these renders can reach:

    floor = mean over test words of (1 - 1 / |words of the slot that look the same|)

    .venv/bin/python benchmarks/lipread_floor.py --bank /work/bench/lipbank [--json]

Word timings of the bank delimit the words (the oracle is also told where words start),
so this floor is, if anything, optimistic about segmentation.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from avedge.models.corpus import text
from avedge.models.corpus.visemes import to_visemes
from avedge.models.corpus.voicebank import open_bank
from avedge.models.corpus.voices import split_of
from avedge.models.lipreader.tokenizer import normalize

SLOTS = [sorted({normalize(w) for w in slot}) for slot in text.GRID_SLOTS]


def word_visemes(utt) -> list[tuple[str, tuple[str, ...]]]:
    """(word, viseme string) per word of a bank utterance; a phone belongs to the word
    that holds its midpoint; silence is not part of a word."""
    out = []
    for word, ws, we in utt.words:
        vis = [v for v, s, e in to_visemes(utt.phones) if ws <= (s + e) / 2 < we and v != "sil"]
        merged = tuple(v for i, v in enumerate(vis) if i == 0 or v != vis[i - 1])
        out.append((normalize(word), merged))
    return out


def floor(bank_dir: str | None, split: str = "test") -> dict:
    bank = open_bank(bank_dir)
    looks: dict[str, set] = defaultdict(set)  # word -> viseme strings seen in training
    test_words = []
    for u in bank.utts:
        if u.kind != "grid":
            continue
        pairs = word_visemes(u)
        if len(pairs) != len(SLOTS):
            continue  # a synthesizer that split or merged a word: not a grammar parse
        where = split_of(u.voice)
        if where == "train":
            for w, v in pairs:
                looks[w].add(v)
        elif where == split:
            test_words.append(pairs)
    if not test_words:
        raise SystemExit(f"no GRID utterances of split {split!r} in {bank.root}")
    per_slot = []
    confusable = {}
    for k, slot in enumerate(SLOTS):
        errs = []
        for pairs in test_words:
            w, v = pairs[k]
            same = {c for c in slot if v in looks[c]} | {w}
            errs.append(1.0 - 1.0 / len(same))
            if len(same) > 1:
                confusable[w] = sorted(same)
        per_slot.append(sum(errs) / len(errs))
    total = sum(per_slot) / len(per_slot)
    return {"wer_floor": round(100 * total, 2), "sentences": len(test_words), "split": split,
            "per_slot_wer": {name: round(100 * e, 2) for name, e in zip(
                ("command", "colour", "preposition", "letter", "digit", "adverb"), per_slot,
                strict=True)},
            "confusable": confusable, "bank": str(bank.root)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", help="voice bank (default: $AVEDGE_VOICEBANK or the cache)")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = floor(args.bank, args.split)
    if args.json:
        print(json.dumps(r, indent=1))
        return
    print(f"viseme-oracle WER floor on {r['sentences']} {r['split']} GRID sentences: "
          f"{r['wer_floor']:.2f} %")
    print("per slot: " + ", ".join(f"{k} {v:.2f} %" for k, v in r["per_slot_wer"].items()))
    groups = sorted({tuple(g) for g in r["confusable"].values()})
    print("words that look the same: " + "; ".join("/".join(g) for g in groups))


if __name__ == "__main__":
    main()
