"""Training ROIs that took the path a user's video takes: rendered full frames, H.264,
decoded, the mouth tracked and cropped by the runtime's own code.

The ROI cache (data.py) renders each mouth ROI directly at 88x88: crisp, and framed on the
true mouth. A clip read by `avedge lipread` is none of that: the mouth covers ~75 pixels
of a 512x512 frame (upsampled to 88), H.264 softens it, and the tracker's box moves by
1-3 ROI pixels - downwards as the jaw opens, since it follows the lips. Session 15
measured the cost on the same 12 test sentences: 18.1 % WER on rendered ROIs, 33.3 % on
the mp4s. This module renders every cached utterance again through
    render_frames -> (a slow head drift, a smaller frame) -> write_video (libx264, a drawn
    crf) -> read_video -> track_mouth -> crop_rois
and stores the ROIs beside the split cache with the same frame offsets:
    <split>/video-rois/frames.npy  uint8 (N, 88, 88), N = the split's frames
    <split>/video-rois/meta.json   {"done": utterances finished, "frames", "seed",
                                    "version", "draws": [[crf, scale, drift px], ...]}
A build resumes where it stopped (`done` is committed after the frames it counts); one of
another PATH_VERSION (the tracker changed) starts again.

    python -m avedge.models.lipreader.video_path BANK [--cache DIR] [--splits train,val]
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from avedge.models.lipreader import data as D
from avedge.runtime.errors import AvedgeError, InputError
from avedge.runtime.fsutil import atomic_write_json

FOLDER = "video-rois"
CRF = (16, 30)  # libx264 constant rate factor drawn per utterance (the corpus writes 20)
SCALE = (0.6, 1.0)  # frame size relative to the 512x512 render: the mouth's pixel size
DRIFT_PX = 6.0  # most head drift (frame pixels at scale 1): the tracker must follow
COMMIT_EVERY = 50
# What the ROIs depend on besides the draws: raise it when the runtime's tracker or crop
# changes (a cache built by another version is built again). 2: the head/offset track.
PATH_VERSION = 2


def draw(rng: np.random.Generator) -> tuple[int, float, float]:
    """(crf, scale, drift amplitude in pixels) of one utterance; half of them as the
    corpus writes its mp4s (full size, crf 20, still), so that case is well covered."""
    if rng.random() < 0.5:
        return 20, 1.0, 0.0
    return (int(rng.integers(CRF[0], CRF[1] + 1)), float(rng.uniform(*SCALE)),
            float(rng.uniform(0, DRIFT_PX)))


def frames_of(speaker, poses: np.ndarray, scale: float, drift: float,
              rng: np.random.Generator) -> np.ndarray:
    """(F, H, W, 3) uint8: the rendered face, shifted along a slow smooth path of at most
    `drift` pixels, resized by `scale`."""
    import cv2
    from avedge.models.corpus.render import render_frames

    F = len(poses)
    t = np.arange(F) / D.lr.FPS
    f = rng.uniform(0.2, 0.8, 2)  # Hz: a head sways, it does not shake
    ph = rng.uniform(0, 2 * np.pi, 2)
    dx = drift * np.sin(2 * np.pi * f[0] * t + ph[0])
    dy = drift * np.sin(2 * np.pi * f[1] * t + ph[1])
    out = []
    for k, img in enumerate(render_frames(speaker, poses)):
        H, W = img.shape[:2]
        size = (max(2, round(W * scale / 2) * 2), max(2, round(H * scale / 2) * 2))
        A = np.array([[size[0] / W, 0, dx[k] * size[0] / W],
                      [0, size[1] / H, dy[k] * size[1] / H]], np.float64)
        out.append(cv2.warpAffine(img, A, size, flags=cv2.INTER_AREA,
                                  borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def video_rois(frames: np.ndarray, crf: int, tmpdir: str | Path) -> np.ndarray:
    """(F, H, W, 3) -> (F, 88, 88) uint8: through an H.264 file and the runtime's reader,
    tracker and crop (lipread's preprocessing, minus normalisation)."""
    from avedge.runtime.video_io import read_video, write_video
    from avedge.runtime.vision.roi import crop_rois
    from avedge.runtime.vision.track import track_mouth

    path = Path(tmpdir) / "clip.mp4"
    write_video(path, frames, D.lr.FPS, crf=crf, preset="veryfast")
    decoded = read_video(path, fps=D.lr.FPS).frames
    os.unlink(path)
    if len(decoded) != len(frames):  # pad/cut to the rendered count (labels are timed on it)
        idx = np.minimum(np.arange(len(frames)), len(decoded) - 1)
        decoded = decoded[idx]
    return crop_rois(decoded, track_mouth(decoded))


def build(bank, cache: D.SplitCache, seed: int = 0, face_seed: int = 0,
          progress=None, stop_after: float | None = None) -> np.ndarray:
    """Fill <split>/video-rois for every utterance of `cache` (resuming); -> its frames
    (memory-mapped). stop_after: seconds, then return what is done (a later call goes on)."""
    import time

    import torch
    from avedge.models.corpus.face import FaceVariation, default_photo, find_mouth
    from avedge.models.corpus.render import make_speaker
    from avedge.models.corpus.visemes import lips_pose

    root = cache.root / FOLDER
    root.mkdir(exist_ok=True)
    meta_path, frames_path = root / "meta.json", root / "frames.npy"
    N = len(cache.frames)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    key = (N, seed, PATH_VERSION)
    if meta is None or (meta["frames"], meta["seed"], meta.get("version")) != key:
        meta = {"done": 0, "frames": N, "seed": seed, "face_seed": face_seed,
                "version": PATH_VERSION,
                "crf": CRF, "scale": SCALE, "drift_px": DRIFT_PX, "draws": []}
        np.lib.format.open_memmap(frames_path, "w+", np.uint8, (N, D.ROI, D.ROI)).flush()
        atomic_write_json(meta_path, meta, indent=None)
    out = np.load(frames_path, mmap_mode="r+")
    by_key = {(u.voice, u.index): u for v in bank.by_voice for u in bank.by_voice[v]}
    mouth = find_mouth(default_photo())
    speakers: dict = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="avedge-vp-") as tmp, torch.inference_mode():
        for i in range(meta["done"], len(cache)):
            u = cache.utts[i]
            bu = by_key.get((u["voice"], u["index"]))
            if bu is None:
                raise AvedgeError(f"utterance {u['voice']}#{u['index']} of the cache is not "
                                  f"in the bank {bank.root}: pass the bank the cache was "
                                  f"built from")
            if u["voice"] not in speakers:  # the face data.build_split drew for this voice
                speakers[u["voice"]] = make_speaker(FaceVariation.of_voice(face_seed, u["voice"]),
                                                    mouth=mouth)
            rng = np.random.default_rng([seed, u["frame"]])
            crf, scale, drift = draw(rng)
            poses = lips_pose(bu.phones, u["frames"])
            try:
                rois = video_rois(frames_of(speakers[u["voice"]], poses, scale, drift, rng),
                                  crf, tmp)
            except InputError:  # no face found at this size: keep the rendered ROIs
                rois, crf = np.asarray(cache.video(i)), -1
            out[u["frame"]: u["frame"] + u["frames"]] = rois
            meta["draws"].append([crf, round(scale, 3), round(drift, 2)])
            if (i + 1) % COMMIT_EVERY == 0 or i + 1 == len(cache):
                out.flush()
                meta["done"] = i + 1
                atomic_write_json(meta_path, meta, indent=None)
                if progress:
                    progress(f"{cache.root.name}: {i + 1}/{len(cache)} utterances")
                if stop_after and time.monotonic() - t0 > stop_after:
                    break
    return np.load(frames_path, mmap_mode="r")


def open_rois(cache: D.SplitCache) -> D.SplitCache | None:
    """The split with its frames replaced by the video-path ROIs (None until complete)."""
    root = cache.root / FOLDER
    if not (root / "meta.json").is_file():
        return None
    meta = json.loads((root / "meta.json").read_text())
    if meta["done"] < len(cache) or meta["frames"] != len(cache.frames) \
            or meta.get("version") != PATH_VERSION:
        return None
    return D.SplitCache(cache.root, cache.utts, np.load(root / "frames.npy", mmap_mode="r"),
                        cache.audio)


def main(argv=None) -> int:
    import argparse
    import sys

    from avedge.models.corpus.voicebank import open_bank

    p = argparse.ArgumentParser(prog="python -m avedge.models.lipreader.video_path",
                                description="Render the lip reader's cached utterances "
                                            "through H.264 and the runtime's mouth tracker.")
    p.add_argument("bank")
    p.add_argument("--cache", default=None, help="default: BANK/lipreader-cache")
    p.add_argument("--splits", default="train,val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="only the first N utterances (a trial)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    try:
        bank = open_bank(a.bank)
        cache_dir = Path(a.cache) if a.cache else D.default_cache(bank.root)
        for s in [s for s in a.splits.split(",") if s]:
            c = D.SplitCache.open(cache_dir / s)
            build(bank, c, a.seed, progress=lambda m: print(m, flush=True))
    except AvedgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
