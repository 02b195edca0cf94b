"""`avedge corpus --check DIR`: validate a written corpus and summarise it.

Catches: missing files, unreadable files, wrong sample or frame rates, ROI/lips-pose
lengths that disagree with the audio (more than one frame off), voices outside the
manifest's split, and manifest entries without files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from avedge.models.corpus.visemes import FPS, N_DIMS
from avedge.models.corpus.voicebank import SAMPLE_RATE
from avedge.runtime.errors import AvedgeError

HOP = SAMPLE_RATE // FPS


def check_corpus(root) -> tuple[list[str], dict]:
    """-> (problems, summary). An empty problem list means the corpus is valid."""
    import soundfile as sf

    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise AvedgeError(f"{root} has no manifest.json: not a corpus written by avedge corpus")
    man = json.loads(mpath.read_text())
    split, probs = man["split"], []
    split_voices = set(man["splits"][split]["voices"])
    seconds, frames, voices, synths = 0.0, 0, set(), set()
    exts = [".wav", ".npz", ".json"] + ([".mp4"] if man.get("video") else [])
    for uid in man["utterances"]:
        base = root / split / uid
        missing = [e for e in exts if not base.with_suffix(e).exists()]
        if missing:
            probs.append(f"{uid}: missing {', '.join(uid + e for e in missing)}")
            continue
        try:
            meta = json.loads(base.with_suffix(".json").read_text())
            info = sf.info(str(base.with_suffix(".wav")))
            with np.load(base.with_suffix(".npz")) as z:
                roi, pose = z["roi"], z["lips_pose"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
            probs.append(f"{uid}: unreadable ({exc})")
            continue
        if info.samplerate != SAMPLE_RATE:
            probs.append(f"{uid}: wav at {info.samplerate} Hz, expected {SAMPLE_RATE}")
        if meta.get("fps") != FPS or meta.get("sample_rate") != SAMPLE_RATE:
            probs.append(f"{uid}: json says fps={meta.get('fps')} sr={meta.get('sample_rate')}")
        want = -(-info.frames // HOP)
        for name, arr, shape in (("roi", roi, (88, 88)), ("lips_pose", pose, (N_DIMS,))):
            if arr.shape[1:] != shape:
                probs.append(f"{uid}: {name} frames are {arr.shape[1:]}, expected {shape}")
            if abs(len(arr) - want) > 1:
                probs.append(f"{uid}: {name} has {len(arr)} frames but the audio "
                             f"({info.frames} samples) needs {want}")
        if meta.get("n_samples") != info.frames:
            probs.append(f"{uid}: json n_samples {meta.get('n_samples')} != wav {info.frames}")
        if meta.get("voice") not in split_voices:
            probs.append(f"{uid}: voice {meta.get('voice')} is not in split {split}")
        seconds += info.frames / SAMPLE_RATE
        frames += len(roi)
        voices.add(meta.get("voice"))
        synths.add(meta.get("synth"))
    listed = set(man["utterances"])
    stray = sorted(p.stem for p in (root / split).glob("*.json") if p.stem not in listed)
    if stray:
        probs.append(f"{len(stray)} file set(s) not in the manifest, e.g. {stray[0]}")
    summary = {"split": split, "utterances": len(man["utterances"]), "seconds": round(seconds, 1),
               "frames": frames, "voices": len(voices), "synths": sorted(s for s in synths if s),
               "seed": man["seed"], "generator_version": man["generator_version"]}
    return probs, summary
