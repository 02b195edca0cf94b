"""The lip reader's metric on an artifact (through the runtime) and on an eager module.

Word error rate (lower is better) of video-only reading at token rate 1, read as the best
sentence of the corpus grammar (as `avedge lipread` reads): the lip-reading job itself,
and the condition compression hurts first (audio makes the task easy). Items are whole GRID-grammar utterances of the voice
bank's val split (held out of training; the test split stays for final scores), drawn by
a fixed seed, windowed and padded as the runtime pads a clip. The artifact path is the
task code users run (runtime/pipelines/lipread.py: run_windows, then the task's search
with the artifact's grammar); ROIs come from the bank's ROI cache (models/lipreader/data.py,
built on first use), so the face tracker, the same for every recipe, is not in the loop.
Without a voice bank (a fresh clone, CI) the value is null and "reason" says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from avedge.runtime.errors import AvedgeError

METRIC = "wer"
SPLIT = "val"
RATE = 1
MODALITY = (1.0, 0.0)  # video only
SEED = 1234
MEASURE_N = 8


def eval_items(n: int, bank_dir=None, split: str = SPLIT, seed: int = SEED,
               kind: str = "grid") -> tuple[list[dict], dict]:
    """n whole utterances of `kind` from the split's ROI cache -> (windows, provenance)."""
    from avedge.models.corpus.voicebank import default_bank_dir, open_bank
    from avedge.models.lipreader import data as D

    bank = open_bank(bank_dir or default_bank_dir())
    cache = D.build_split(bank, split, D.default_cache(bank.root))
    fits = [i for i, u in enumerate(cache.utts) if u["kind"] == kind and u["frames"]
            <= D.lr.WINDOW]
    if not fits:
        raise AvedgeError(f"the bank at {bank.root} has no {kind} utterances in its "
                          f"{split} split")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.permutation(len(fits))[:n])
    windows = [D.sample(cache, fits[i], None) for i in pick]
    prov = {"bank": str(bank.root), "bank_seed": bank.info().get("seed"), "split": split,
            "kind": kind, "seed": seed, "n": len(windows),
            "conditions": "video only, token rate 1, corpus-grammar search, clean, whole "
                          "utterances padded to the window"}
    return windows, prov


def _result(refs: list[str], hyps: list[str], prov: dict) -> dict:
    from avedge.models.lipreader.train import wer

    return {"name": METRIC, "value": round(100 * wer(refs, hyps), 2), "unit": "%",
            "higher_is_better": False, "n": len(refs), "eval_set": prov}


def _unavailable(exc: Exception) -> dict:
    return {"name": METRIC, "value": None, "higher_is_better": False,
            "reason": f"no lip-reading eval data: {exc}"}


def measure(artifact_dir, n: int = MEASURE_N, backend: str | None = None) -> dict:
    """WER (%) of an exported lip reader through the runtime on n val utterances."""
    from avedge.runtime.pipelines.lipread import open_rate, run_windows, search, window_hop
    from avedge.runtime.vision.roi import normalize

    try:
        windows, prov = eval_items(n)
    except AvedgeError as exc:
        return _unavailable(exc)
    session, extra = open_rate(Path(artifact_dir), RATE, backend)
    window = int(session.spec.input("video").shape[1])
    hop = window_hop(window, max(int(r) for r in extra["rates"]))
    mean, std = float(extra["roi_mean"]), float(extra["roi_std"])
    refs, hyps = [], []
    for w in windows:
        video = normalize(w["video"], mean, std)  # as the task scales its ROIs
        lp = run_windows(session, video, w["audio"], np.asarray(MODALITY, np.float32),
                         window, hop, int(extra["hop_samples"]))
        k = len(lp) // len(video)  # CTC frames per video frame
        lp = lp[k * w["lead"]: k * (w["lead"] + w["frames"])]
        hyps.append(search(lp, extra, 1.0)[0].text)  # the task's search (times unused)
        refs.append(" ".join(w["words"]))
    prov = {**prov, "backend": session.backend}
    return _result(refs, hyps, prov)


def score_module(module, n: int = MEASURE_N) -> dict:
    """The same WER on the eager module (its rate-1 graph), for sensitivity tables."""
    from avedge.models.lipreader import manifest_extra
    from avedge.models.lipreader.model import AtRate
    from avedge.models.lipreader.train import log_probs
    from avedge.runtime.pipelines.lipread import search

    try:
        windows, prov = eval_items(n)
    except AvedgeError as exc:
        return _unavailable(exc)
    model = module.model if isinstance(module, AtRate) else module
    lps = log_probs(model, windows, MODALITY, (RATE,))[RATE]
    extra = manifest_extra()  # what an export of it would carry: the same search
    hyps = [search(lp, extra, 1.0)[0].text for lp in lps]
    return _result([" ".join(w["words"]) for w in windows], hyps, {**prov, "backend": "eager"})
