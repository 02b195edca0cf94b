"""Writing a corpus to files.

    <out>/manifest.json            generator version, seed, split, bank, voices and
                                   synthesizers per split, the utterance ids
    <out>/<split>/<id>.wav         16 kHz mono PCM16, the clean utterance
    <out>/<split>/<id>.npz         roi (F, 88, 88) uint8, lips_pose (F, 12) float32
    <out>/<split>/<id>.json        text, words and phones with times, visemes, lips_pose,
                                   voice, synth, face variation, mouth, frame/sample counts
    <out>/<split>/<id>.mp4         with --video: full rendered face, H.264 25 fps, audio muxed

Same seed -> same bytes: npz members are written with a fixed zip timestamp, json with
sorted keys, mp4 with ffmpeg's bitexact flags and one encoder thread.
A speaker's face variation is a function of (seed, voice), so a voice keeps its face.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
from avedge.models.corpus import GENERATOR_VERSION
from avedge.models.corpus.face import FaceVariation
from avedge.models.corpus.render import make_speaker, render_frames, render_roi
from avedge.models.corpus.visemes import DIMS, FPS, lips_pose, to_visemes
from avedge.models.corpus.voicebank import SAMPLE_RATE, open_bank
from avedge.models.corpus.voices import SPLITS
from avedge.runtime.errors import AvedgeError

HOP = SAMPLE_RATE // FPS  # 640 samples per video frame


def n_frames(n_samples: int) -> int:
    return -(-n_samples // HOP)


def save_npz(path: Path, **arrays) -> None:
    """np.savez_compressed, but with fixed zip timestamps (reproducible bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def write_mp4(path: Path, frames, size: tuple[int, int], wav: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise AvedgeError("--video needs ffmpeg (apt-get install ffmpeg)")
    h, w = size
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-i", str(wav),
           "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
           "-pix_fmt", "yuv420p", "-threads", "1", "-c:a", "aac", "-b:a", "64k",
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
           "-map_metadata", "-1", "-shortest", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for fr in frames:
        proc.stdin.write(np.ascontiguousarray(fr).tobytes())
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise AvedgeError(f"ffmpeg failed writing {path}: {err.strip()[-300:]}")


def write_corpus(out, n: int, seed: int = 0, split: str = "train", bank_dir=None,
                 holdout_synth: str | None = None, video: bool = False,
                 progress=None, kind: str | None = None) -> dict:
    """`kind`: "grid" (the command grammar lip reading is scored on) or "free" sentences
    only; None draws from both."""
    if split not in SPLITS:
        raise AvedgeError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    if n < 1:
        raise AvedgeError(f"--n must be >= 1, got {n}")
    bank = open_bank(bank_dir)
    if kind not in (None, "grid", "free"):
        raise AvedgeError(f"unknown sentence kind {kind!r}; available: grid, free")
    voices = [v for v in bank.voices_in(split, holdout_synth, timed=True)
              if kind is None or any(u.kind == kind for u in bank.by_voice[v])]
    if not voices:
        raise AvedgeError(f"the bank at {bank.root} has no voices in split {split!r}"
                          + (f" with {kind} sentences" if kind else ""))
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    speakers: dict[str, object] = {}
    ids = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 31])
        voice = voices[int(rng.integers(len(voices)))]
        utts = [u for u in bank.by_voice[voice] if kind is None or u.kind == kind]
        u = utts[int(rng.integers(len(utts)))]
        if voice not in speakers:
            speakers[voice] = make_speaker(FaceVariation.of_voice(seed, voice))
        sp = speakers[voice]
        audio = bank.audio(u)
        F = n_frames(len(audio))
        pose = lips_pose(u.phones, F)
        roi = render_roi(sp, pose)
        uid = f"{split}-{seed}-{i:06d}"
        base = out / split / uid
        write_wav(base.with_suffix(".wav"), audio)
        save_npz(base.with_suffix(".npz"), roi=roi, lips_pose=pose)
        meta = {
            "id": uid, "text": u.text, "kind": u.kind, "voice": voice, "synth": u.synth,
            "split": split, "sample_rate": SAMPLE_RATE, "fps": FPS, "n_samples": len(audio),
            "n_frames": F, "words": u.words, "phones": u.phones,
            "visemes": [[v, round(s, 4), round(e, 4)] for v, s, e in to_visemes(u.phones)],
            "lips_pose_dims": list(DIMS), "lips_pose": np.round(pose, 4).tolist(),
            "face": sp.variation.to_json(),
            "mouth": [round(float(x), 3) for x in sp.mouth.as_array()],
            "bank_utterance": [voice, u.index],
        }
        if video:
            write_mp4(base.with_suffix(".mp4"), render_frames(sp, pose), sp.photo.shape[:2],
                      base.with_suffix(".wav"))
        base.with_suffix(".json").write_text(json.dumps(meta, sort_keys=True))
        ids.append(uid)
        if progress:
            progress(f"[{i + 1}/{n}] {uid} {voice}: {u.text}")
    manifest = {
        "generator": "avedge.models.corpus", "generator_version": GENERATOR_VERSION,
        "seed": seed, "split": split, "n": n, "video": video, "holdout_synth": holdout_synth,
        "sample_rate": SAMPLE_RATE, "fps": FPS, "roi": [88, 88],
        "bank": {"path": str(bank.root), "seed": bank.info().get("seed"),
                 "voices": len(bank.voices)},
        "splits": {s: {"voices": (vs := bank.voices_in(s, holdout_synth)),
                       "synths": sorted({v.partition(":")[0] for v in vs})} for s in SPLITS},
        "utterances": ids,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
