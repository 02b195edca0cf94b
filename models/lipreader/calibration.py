"""What static int8 (and the recipes that fine-tune or rank on inputs: Taylor pruning,
distillation, QAT) calibrate the lip reader's graphs on: real mouth ROIs and speech.

Windows come from the TRAIN split of the voice bank's ROI cache (models/lipreader/data.py),
never the val split the metric is scored on (evaluate.py) nor the test split: whole
utterances padded as the runtime pads a clip, a fixed seed, the three modality
conditions in turn (both, video only, audio only), as the trained model meets them.
The cache is only read here, never built (rendering a train split takes minutes): where
there is none, `attach` leaves the graph without calibration inputs and quantization
falls back to perturbed copies of the example inputs, which its provenance records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLIT = "train"
SEED = 4321
N_WINDOWS = 16  # Int8StaticConfig's default calibration_batches
MODALITIES = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0))


def _split_dir(bank_dir=None) -> Path | None:
    """The train split's cache folder when it has an index (no bank or cache: None)."""
    from avedge.models.corpus.voicebank import default_bank_dir
    from avedge.models.lipreader import data as D

    root = Path(bank_dir or default_bank_dir())
    split = D.default_cache(root) / SPLIT
    return split if (split / "index.json").is_file() else None


def calibration_windows(n: int = N_WINDOWS, bank_dir=None) -> tuple[list[tuple], dict]:
    """-> (n input batches (video, audio, modality) as torch tensors, provenance)."""
    import torch
    from avedge.models.lipreader import data as D
    from avedge.models.lipreader import model as lr
    from avedge.runtime.errors import AvedgeError

    split = _split_dir(bank_dir)
    if split is None:
        raise AvedgeError(f"no lip-reader ROI cache of the {SPLIT} split under "
                          f"{bank_dir or 'the default voice bank'}")
    cache = D.SplitCache.open(split)
    fits = [i for i, u in enumerate(cache.utts) if 0 < u["frames"] <= lr.WINDOW]
    if not fits:
        raise AvedgeError(f"the {SPLIT} ROI cache at {split} has no utterance of at most "
                          f"{lr.WINDOW} frames")
    pick = sorted(np.random.default_rng(SEED).permutation(len(fits))[:n])
    batches = []
    for k, j in enumerate(pick):
        w = D.sample(cache, fits[j], None)  # the whole utterance, padded as the runtime pads
        video = D.normalise(torch.from_numpy(np.asarray(w["video"])))[None]
        audio = torch.from_numpy(np.asarray(w["audio"], np.float32))[None]
        modality = torch.tensor([MODALITIES[k % len(MODALITIES)]], dtype=torch.float32)
        batches.append((video, audio, modality))
    prov = {"cache": str(split), "split": SPLIT, "seed": SEED, "windows": len(batches),
            "modalities": "both, video only, audio only in turn"}
    return batches, prov


def attach(graph, bank_dir=None):
    """`graph` (an AtRate) given calibration_inputs() / calibration_provenance() over the
    train split's windows when the cache exists (read on first use, then kept); else the
    graph unchanged. -> graph."""
    if _split_dir(bank_dir) is None:
        return graph
    memo: dict = {}

    def load() -> tuple[list[tuple], dict]:
        if not memo:
            memo["batches"], memo["prov"] = calibration_windows(bank_dir=bank_dir)
        return memo["batches"], memo["prov"]

    # Plain attributes (not methods): quantize.calibration looks them up with hasattr.
    object.__setattr__(graph, "calibration_inputs", lambda: load()[0])
    object.__setattr__(graph, "calibration_provenance", lambda: load()[1])
    return graph
