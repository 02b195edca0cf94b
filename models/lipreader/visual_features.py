"""Precomputed visual front-end features: video training at the speed of audio training.

On this machine's one training thread a step with video costs ~8x an audio-only step, ~90 %
of it the visual front-end (3D stem + 2D CNN over 88x88 ROIs), forward and backward. With
the front-end held fixed (`avedge train lipreader --visual-features`), its output for every
cached frame is computed once - for the plain ROIs and for `variants - 1` augmented copies
(augment_video, seeded per utterance) - and the encoder, fusion and heads train on those
features: the many steps video needs (issue #16) without the front-end's cost.

Stored beside the split's ROI cache, one folder per front-end (its weights' fingerprint):
    <split>/visual-<fingerprint>/features.npy  float16 (N frames, variants, d_model)
    <split>/visual-<fingerprint>/meta.json     {"fingerprint", "variants", "seed", "frames",
                                                "utterances", "d_model"}
A folder is written under a temporary name and renamed when complete, so a killed build
leaves nothing that could be read as finished.

Features are computed over each whole utterance (as the runtime runs a whole clip); a
training window slices them. At a crop's edges and in the padding the 3D stem would have
seen a slightly different 5-frame neighbourhood (replicated edge frames) - 2 frames at
each edge; the validation scores run the real front-end on real windows, so they show
whether that matters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from avedge.models.lipreader import data as D
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json

VARIANTS = 2  # the plain ROIs + one augmented copy
META = "meta.json"
FEATURES = "features.npy"


def fingerprint(visual) -> str:
    """Hash of the visual front-end's parameters and BatchNorm statistics."""
    h = hashlib.sha1()
    for name, t in sorted(visual.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class VisualFeatures:
    """One split's precomputed features; `of(i)` -> (frames, variants, d) for utterance i
    (the split cache's frame offsets index them)."""

    def __init__(self, root: Path, meta: dict, feats: np.ndarray):
        self.root, self.meta, self.feats = root, meta, feats
        self.variants = int(meta["variants"])

    @classmethod
    def open(cls, root: str | Path) -> VisualFeatures:
        root = Path(root)
        meta = json.loads((root / META).read_text())
        feats = np.load(root / FEATURES, mmap_mode="r")
        return cls(root, meta, feats)

    def of(self, cache: D.SplitCache, i: int) -> np.ndarray:
        u = cache.utts[i]
        return self.feats[u["frame"]: u["frame"] + u["frames"]]


class Stacked:
    """Several VisualFeatures of one split side by side: their variants concatenated
    (e.g. the rendered ROIs' plain and augmented copies + the video-path ROIs')."""

    def __init__(self, parts: list[VisualFeatures]):
        self.parts = parts
        self.variants = sum(p.variants for p in parts)
        self.meta = {"parts": [{"folder": p.root.name, **p.meta} for p in parts],
                     "variants": self.variants}

    def of(self, cache: D.SplitCache, i: int) -> np.ndarray:
        return np.concatenate([p.of(cache, i) for p in self.parts], axis=1)


def features_dir(cache: D.SplitCache, visual, tag: str = "") -> Path:
    return cache.root / f"visual-{fingerprint(visual)}{'-' + tag if tag else ''}"


def build(visual, cache: D.SplitCache, variants: int = VARIANTS, seed: int = 0,
          log=print, tag: str = "") -> VisualFeatures:
    """Open the features of `visual` (a VisualFrontEnd) for this split, computing them
    first when absent (eval mode, no gradients; about a minute per 10 000 frames and
    variant on one thread). tag: names another source of frames for the same split (the
    cache's frames are then e.g. video_path.open_rois's), stored in visual-<fp>-<tag>."""
    import torch

    if variants < 1:
        raise AvedgeError(f"visual feature variants: >= 1 (the plain ROIs first); got {variants}")
    final = features_dir(cache, visual, tag)
    if (final / META).is_file():
        vf = VisualFeatures.open(final)
        if vf.meta["frames"] >= len(cache.frames) and vf.variants == variants:
            return vf
        shutil.rmtree(final)  # the cache grew, or other variants: compute again
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(cache.frames)
    d = visual.proj.out_features
    feats = np.lib.format.open_memmap(tmp / FEATURES, "w+", np.float16, (n, variants, d))
    was_training = visual.training
    visual.eval()
    dev = next(visual.parameters()).device
    log(f"visual features: {len(cache)} utterances, {n} frames x {variants} variants -> {final}")
    with torch.no_grad():
        for i, u in enumerate(cache.utts):
            frames = np.asarray(cache.video(i))
            for v in range(variants):
                x = frames if v == 0 else D.augment_video(
                    frames, np.random.default_rng([seed, u["frame"], v]))
                out = visual(D.normalise(torch.from_numpy(np.array(x)))[None]
                             .to(dev))[0]
                feats[u["frame"]: u["frame"] + u["frames"], v] = out.float().cpu().numpy()
            if (i + 1) % 500 == 0:
                log(f"visual features: {i + 1}/{len(cache)} utterances")
    visual.train(was_training)
    feats.flush()
    del feats
    atomic_write_json(tmp / META, {"fingerprint": fingerprint(visual), "tag": tag,
                                   "variants": variants, "seed": seed, "frames": n,
                                   "utterances": len(cache), "d_model": d})
    os.replace(tmp, final)
    return VisualFeatures.open(final)
