"""The lip reader's training data: a cache of rendered mouth ROIs built from a voice bank,
then augmented, padded windows.

    python -m avedge.models.lipreader.data BANK [--cache DIR] [--splits train,val,test]

Cache (default <bank>/lipreader-cache/, one folder per split):
    frames.npy   uint8 (N, 88, 88): every utterance's ROI frames, concatenated
    audio.npy    int16 (M,): every utterance's samples, each padded to frames * 640
    index.json   {"face_seed", "generator_version", "utterances": [{"voice", "index",
                 "synth", "kind", "text", "words", "frame", "frames", "sample",
                 "samples"}]}
Each utterance is rendered once (~500 ROI frames/s on one core): lips_pose(phones) ->
render_roi(speaker, pose), the speaker's face a function of (face_seed, voice) exactly as
the corpus writer draws it, so the test split's faces are the corpus test faces. A bank
that grew adds only its new utterances. The arrays only grow: new utterances are
appended past the indexed end, then index.json (written atomically) commits them, then
the .npy header is updated; a killed build leaves bytes past the index, cut off at the
next build. Readers trust index.json, not the header.

A sample is a window of at most WINDOW frames, padded exactly as the runtime pads a
clip (models/lipreader/model.py): a lead-in repeating the first frame, the utterance (a
crop at word boundaries when it is longer), then the last frame repeated; silence for
the audio around the utterance. The lead-in is drawn over all the room the window leaves:
with speech always at the window's start (a lead-in of at most 8 frames, as first
trained) the model learned a positional prior: it emitted a sentence's first letters
at frame 0 however late the speech began (24 frames of silence before it changed
nothing there), so the first word's timing was wrong.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from avedge.models.lipreader import model as lr
from avedge.models.lipreader import tokenizer
from avedge.models.lipreader.lexicon import corpus_lexicon  # noqa: F401 (the beam's word list)
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json

CACHE_NAME = "lipreader-cache"
SPLITS = ("train", "val", "test")
HOP = lr.HOP_SAMPLES
ROI = lr.ROI
FRAME_BYTES = ROI * ROI
HEADER = 128  # bytes of our .npy headers (fixed, so the shape can be rewritten in place)
FLUSH_EVERY = 200  # utterances rendered between commits of a cache build


def default_cache(bank_root: str | Path) -> Path:
    return Path(bank_root) / CACHE_NAME


# ----------------------------------------------------------------------------- arrays

def _header(dtype: np.dtype, shape: tuple) -> bytes:
    """A .npy v1.0 header padded to exactly HEADER bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    pad = HEADER - 10 - len(text) - 1
    if pad < 0:
        raise AvedgeError(f"shape {shape} does not fit a {HEADER}-byte .npy header")
    body = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def _append(path: Path, dtype, item_shape: tuple, n_old: int, new: np.ndarray) -> None:
    """Write `new` after the first n_old items of the .npy at path (created if absent),
    dropping anything past them (an interrupted append)."""
    item = int(np.prod(item_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    mode = "r+b" if path.exists() else "w+b"
    with open(path, mode) as f:
        if mode == "w+b":
            f.write(_header(dtype, (0, *item_shape)))
        f.truncate(HEADER + n_old * item)
        f.seek(HEADER + n_old * item)
        f.write(np.ascontiguousarray(new, dtype=dtype).tobytes())
        f.flush()
        os.fsync(f.fileno())


def _set_shape(path: Path, dtype, shape: tuple) -> None:
    with open(path, "r+b") as f:
        f.write(_header(dtype, shape))


@contextmanager
def _locked(path: Path):
    """One builder per cache split (a training run and a separate build may overlap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- cache

@dataclass
class SplitCache:
    """One split's cached utterances (arrays memory-mapped)."""

    root: Path
    utts: list[dict]
    frames: np.ndarray  # (N, 88, 88) uint8
    audio: np.ndarray  # (M,) int16

    @classmethod
    def open(cls, root: str | Path) -> SplitCache:
        root = Path(root)
        idx = root / "index.json"
        if not idx.is_file():
            raise AvedgeError(f"no lip-reader cache at {root} (build it with `python -m "
                              f"avedge.models.lipreader.data BANK`)")
        meta = json.loads(idx.read_text())
        utts = meta["utterances"]
        n_f = meta["n_frames"]
        n_a = meta["n_samples"]
        frames = (np.memmap(root / "frames.npy", np.uint8, "r", offset=HEADER,
                            shape=(n_f, ROI, ROI)) if n_f else np.zeros((0, ROI, ROI), np.uint8))
        audio = (np.memmap(root / "audio.npy", np.int16, "r", offset=HEADER, shape=(n_a,))
                 if n_a else np.zeros(0, np.int16))
        return cls(root, utts, frames, audio)

    def video(self, i: int) -> np.ndarray:
        u = self.utts[i]
        return self.frames[u["frame"]: u["frame"] + u["frames"]]

    def pcm(self, i: int) -> np.ndarray:
        """(frames * 640,) float32 in [-1, 1]."""
        u = self.utts[i]
        return self.audio[u["sample"]: u["sample"] + u["frames"] * HOP].astype(np.float32) / 32767

    def __len__(self) -> int:
        return len(self.utts)


def build_split(bank, split: str, cache_dir: str | Path, face_seed: int = 0,
                progress=None, flush_every: int = FLUSH_EVERY) -> SplitCache:
    """Render the bank's utterances of `split` not yet in the cache, append them."""
    import torch
    from avedge.models.corpus import GENERATOR_VERSION
    from avedge.models.corpus.face import FaceVariation, default_photo, find_mouth
    from avedge.models.corpus.render import make_speaker, render_roi
    from avedge.models.corpus.visemes import lips_pose

    if split not in SPLITS:
        raise AvedgeError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    root = Path(cache_dir) / split
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        idx_path = root / "index.json"
        meta = json.loads(idx_path.read_text()) if idx_path.is_file() else {
            "face_seed": face_seed, "generator_version": GENERATOR_VERSION, "split": split,
            "bank": str(bank.root), "n_frames": 0, "n_samples": 0, "utterances": []}
        if (meta["face_seed"], meta["generator_version"]) != (face_seed, GENERATOR_VERSION):
            raise AvedgeError(
                f"the cache at {root} was rendered with face seed {meta['face_seed']} "
                f"(corpus generator {meta['generator_version']}), not {face_seed} "
                f"({GENERATOR_VERSION}); remove it or pass another --cache")
        have = {(u["voice"], u["index"]) for u in meta["utterances"]}
        todo = [u for v in bank.voices_in(split, timed=True) for u in bank.by_voice[v]
                if (u.voice, u.index) not in have]
        if not todo:
            return SplitCache.open(root)
        mouth = find_mouth(default_photo())  # the same for every speaker: find it once
        speakers: dict = {}
        frames, audio, new = [], [], []
        n_f, n_a = meta["n_frames"], meta["n_samples"]

        def commit():
            nonlocal n_f, n_a
            if not new:
                return
            f = np.concatenate(frames)
            a = np.concatenate(audio)
            _append(root / "frames.npy", np.uint8, (ROI, ROI), n_f, f)
            _append(root / "audio.npy", np.int16, (), n_a, a)
            n_f, n_a = n_f + len(f), n_a + len(a)
            meta["utterances"] += new
            meta["n_frames"], meta["n_samples"] = n_f, n_a
            atomic_write_json(idx_path, meta, indent=None)
            _set_shape(root / "frames.npy", np.uint8, (n_f, ROI, ROI))
            _set_shape(root / "audio.npy", np.int16, (n_a,))
            frames.clear(), audio.clear(), new.clear()

        with torch.inference_mode():
            for k, u in enumerate(todo):
                if u.voice not in speakers:  # as models/corpus/writer.py draws a face
                    speakers[u.voice] = make_speaker(FaceVariation.of_voice(face_seed, u.voice),
                                                     mouth=mouth)
                x = bank.audio(u)
                F = -(-len(x) // HOP)
                roi = render_roi(speakers[u.voice], lips_pose(u.phones, F))
                pcm = np.zeros(F * HOP, np.int16)
                pcm[: len(x)] = np.clip(np.round(x * 32767), -32767, 32767)
                new.append({"voice": u.voice, "index": u.index, "synth": u.synth,
                            "kind": u.kind, "text": u.text, "words": u.words,
                            "frame": n_f + sum(len(f) for f in frames), "frames": F,
                            "sample": n_a + sum(len(a) for a in audio), "samples": len(x)})
                frames.append(roi)
                audio.append(pcm)
                if len(new) >= flush_every:
                    commit()
                if progress and (k + 1) % 50 == 0:
                    progress(f"{split}: {k + 1}/{len(todo)} utterances rendered")
            commit()
    return SplitCache.open(root)


def build_cache(bank_dir: str | Path, cache_dir: str | Path | None = None,
                splits=SPLITS, face_seed: int = 0, progress=None) -> dict[str, SplitCache]:
    from avedge.models.corpus.voicebank import open_bank

    bank = open_bank(bank_dir)
    cache_dir = Path(cache_dir) if cache_dir else default_cache(bank.root)
    return {s: build_split(bank, s, cache_dir, face_seed, progress) for s in splits}


# ----------------------------------------------------------------------------- windows

def crop_range(words: list, frames: int, room: int,
               rng: np.random.Generator | None) -> tuple[int, int, list[str]]:
    """-> (first frame, end frame, words) of a window of at most `room` frames: the whole
    utterance when it fits, else a run of whole words (random start; the first run when
    rng is None), cut midway in the silence between words."""
    fps = lr.FPS
    if frames <= room:
        return 0, frames, [w[0] for w in words]
    n = len(words)
    # Cut points before word i / after word j: halfway to the neighbour (or the edge).
    before = [0 if i == 0 else round(0.5 * (words[i - 1][2] + words[i][1]) * fps)
              for i in range(n)]
    after = [frames if j == n - 1 else round(0.5 * (words[j][2] + words[j + 1][1]) * fps)
             for j in range(n)]
    runs = []
    for i in range(n):
        j = i
        while j + 1 < n and after[j + 1] - before[i] <= room:
            j += 1
        if after[j] - before[i] <= room:
            runs.append((i, j))
    if not runs:  # one word longer than the window: its first `room` frames, unlabelled
        return 0, room, []
    i, j = runs[0] if rng is None else runs[int(rng.integers(len(runs)))]
    return before[i], after[j], [w[0] for w in words[i: j + 1]]


def pad_window(video: np.ndarray, audio: np.ndarray, lead: int,
               window: int = lr.WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(n, 88, 88), (n * 640,) -> (window, 88, 88), (window * 640,): `lead` copies of
    the first frame, the clip, the last frame repeated; silence around the audio."""
    n = len(video)
    idx = np.concatenate([np.zeros(lead, int), np.arange(n),
                          np.full(window - lead - n, n - 1)])
    out_a = np.zeros(window * HOP, np.float32)
    out_a[lead * HOP: lead * HOP + len(audio)] = audio
    return video[idx], out_a


# ----------------------------------------------------------------------------- augment

def augment_video(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 88, 88) -> uint8 (n, 88, 88): what a ROI cropped from compressed video
    with an estimated, jittery mouth box looks like."""
    import cv2

    n = len(frames)
    c = (ROI - 1) / 2
    scale = rng.uniform(0.9, 1.1)
    angle = rng.uniform(-5, 5)
    shift = rng.uniform(-4, 4, 2)
    A = cv2.getRotationMatrix2D((c, c), angle, scale)
    A[:, 2] += shift
    jitter = rng.uniform(-1, 1, (n, 2))
    out = np.empty((n, ROI, ROI), np.float32)
    for k in range(n):
        Ak = A.copy()
        Ak[:, 2] += jitter[k]
        out[k] = cv2.warpAffine(frames[k], Ak, (ROI, ROI), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        s = rng.uniform(0.3, 1.3)
        for k in range(n):
            out[k] = cv2.GaussianBlur(out[k], (0, 0), s)
    x = out / 255.0
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-0.12, 0.12)
    x = np.clip(x, 0, 1) ** np.exp(rng.uniform(-0.3, 0.3))  # gamma
    x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape)
    x = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # block artefacts of a compressed stream
        q = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))]
        for k in range(n):
            x[k] = cv2.imdecode(cv2.imencode(".jpg", x[k], q)[1], cv2.IMREAD_GRAYSCALE)
    return x


def _power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2)) + 1e-10


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


def babble(cache: SplitCache, n: int, not_voice: str, rng: np.random.Generator,
           talkers: int) -> np.ndarray:
    """Sum of `talkers` utterances of other voices, each at unit power, looped to n."""
    out = np.zeros(n, np.float32)
    voices = [i for i in rng.integers(len(cache), size=4 * talkers)
              if cache.utts[i]["voice"] != not_voice][:talkers]
    for i in voices:
        x = cache.pcm(int(i))[: cache.utts[int(i)]["samples"]]
        if len(x) == 0:
            continue
        x = np.roll(np.resize(x, n), int(rng.integers(n)))
        out += x / np.sqrt(_power(x))
    return out


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    g = np.sqrt(_power(speech) / (_power(noise) * 10 ** (snr_db / 10)))
    return speech + g * noise


SNR_MIN = -10.0  # lowest SNR of the audio augmentation, dB (the highest is 20)


# Voice and channel augmentation (models/corpus/augment.py, as the extractor's mixtures
# use it), each with its probability: the bank's voices are ~90 % espeak, and a model
# trained on them alone read piper's natural voice at 83 % WER while it read held-out
# espeak voices at 19 %. None of these moves the speech in time (the video stays in sync).
VOICE_AUG = {"pitch": 0.3, "formant": 0.3, "eq": 0.5, "reverb": 0.3, "band": 0.25,
             "codec": 0.1}
PITCH_SEMITONES = 3.0
FORMANT_ALPHA = (0.88, 1.14)


def voice_channel(x: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A different-sounding talker and microphone: pitch, vocal-tract length (formants),
    a spectral tilt, a room, a band limit, a lossy codec; each drawn with VOICE_AUG's
    probability times `scale` (0: none). Same length, same timing."""
    from avedge.models.corpus import augment as A

    if scale <= 0 or len(x) < 2048:
        return x
    p = {k: min(1.0, v * scale) for k, v in VOICE_AUG.items()}
    if rng.random() < p["pitch"]:
        x = A.pitch_shift(x, float(rng.uniform(-PITCH_SEMITONES, PITCH_SEMITONES)))
    if rng.random() < p["formant"]:
        x = A.formant_warp(x, float(rng.uniform(*FORMANT_ALPHA)))
    if rng.random() < p["eq"]:
        x = A.eq(x, rng)
    if rng.random() < p["reverb"]:
        rirs = A.rir_bank(0)
        x = A.reverb(x, rirs[int(rng.integers(len(rirs)))])[0]
    if rng.random() < p["band"]:
        x = A.band_limit(x, rng)
    if rng.random() < p["codec"]:
        x = A.codec(x, rng)
    return np.asarray(x, np.float32)


def augment_audio(x: np.ndarray, cache: SplitCache, voice: str,
                  rng: np.random.Generator, snr_min: float = SNR_MIN,
                  voice_aug: float = 0.0) -> np.ndarray:
    """Voice and channel changes (voice_channel, scaled by voice_aug), gain, then clean
    (25 %), babble of 3-6 other voices (45 %) or white/pink noise (30 %) at an SNR in
    [snr_min, 20] dB: under babble the model must lean on the video."""
    x = voice_channel(x, rng, voice_aug)
    x = x * 10 ** (rng.uniform(-10, 6) / 20)
    r = rng.random()
    if r >= 0.25 and len(x):
        snr = rng.uniform(snr_min, 20)
        if r < 0.70:
            noise = babble(cache, len(x), voice, rng, int(rng.integers(3, 7)))
        else:
            noise = (rng.standard_normal(len(x)).astype(np.float32) if rng.random() < 0.5
                     else pink_noise(len(x), rng))
        x = add_noise(x, noise, snr)
    return np.clip(x, -1, 1).astype(np.float32)


MODALITIES = np.array([[1, 1], [1, 0], [0, 1]], np.float32)  # both, video-only, audio-only


def draw_modality(rng: np.random.Generator) -> np.ndarray:
    return MODALITIES[rng.choice(3, p=[0.5, 0.25, 0.25])]


# ----------------------------------------------------------------------------- samples

def sample(cache: SplitCache, i: int, rng: np.random.Generator | None,
           augment: bool = True, window: int = lr.WINDOW, with_video: bool = True,
           snr_min: float = SNR_MIN, voice_aug: float = 0.0,
           visual: np.ndarray | None = None) -> dict:
    """One window of utterance i: {"video" uint8 (window, 88, 88), "audio" float32
    (window * 640,), "words", "labels", "lead", "frames" (real ones), "voice"}.
    rng None: no lead-in, the first words that fit, no augmentation; else the lead-in is
    drawn over the room the window leaves. with_video False
    (audio-only training): the video is black, neither read nor augmented. snr_min and
    voice_aug: augment_audio's. visual: the utterance's precomputed visual features
    (frames, variants, d) (models/lipreader/visual_features.py): the window then carries
    "visual" float32 (window, d) - a variant drawn when augmenting, else the plain one -
    padded like the frames, and no video."""
    u = cache.utts[i]
    a, b, words = crop_range(u["words"], u["frames"], window, rng)
    lead = 0 if rng is None else int(rng.integers(window - (b - a) + 1))
    use_video = with_video and visual is None
    # No frames at all when precomputed features stand in for them (the hot path of
    # --visual-features: a black window would be built, padded and dropped per sample).
    video = (np.asarray(cache.video(i)[a:b]) if use_video
             else np.zeros((b - a, 0) if visual is not None else (b - a, ROI, ROI), np.uint8))
    audio = cache.pcm(i)[a * HOP: b * HOP]
    if augment and rng is not None:
        if use_video:
            video = augment_video(video, rng)
        audio = augment_audio(audio, cache, u["voice"], rng, snr_min, voice_aug)
    v, au = pad_window(video, audio, lead, window)
    text = " ".join(words)
    out = {"video": v, "audio": au, "words": tokenizer.normalize(text).split(),
           "labels": tokenizer.encode(text), "lead": lead, "frames": b - a,
           "voice": u["voice"], "kind": u["kind"]}
    if visual is not None:
        k = int(rng.integers(visual.shape[1])) if augment and rng is not None else 0
        out["visual"], _ = pad_window(np.asarray(visual[a:b, k], np.float32),
                                      np.zeros(0, np.float32), lead, window)
        del out["video"]
    return out


def collate(samples: list[dict], modality: np.ndarray | None = None, padding: bool = False):
    """-> video uint8 (B, T, 88, 88) (or visual features float32 (B, T, d) when the
    samples carry them), audio (B, T*640), modality (B, 2), labels (sum L,) int64, label
    lengths (B,) int64 (torch tensors); with `padding`, also (B, T) bool: the frames the
    window padded around its clip (silence and repeated frames: nothing is said there)."""
    import torch

    mod = modality if modality is not None else np.ones((len(samples), 2), np.float32)
    key = "visual" if "visual" in samples[0] else "video"  # precomputed features, or ROIs
    batch = (torch.from_numpy(np.stack([s[key] for s in samples])),
            torch.from_numpy(np.stack([s["audio"] for s in samples])),
            torch.from_numpy(np.asarray(mod, np.float32)),
            torch.tensor([c for s in samples for c in s["labels"]], dtype=torch.int64),
            torch.tensor([len(s["labels"]) for s in samples], dtype=torch.int64))
    if not padding:
        return batch
    t = np.arange(len(samples[0]["audio"]) // HOP)
    pad = np.stack([(t < s["lead"]) | (t >= s["lead"] + s["frames"]) for s in samples])
    return (*batch, torch.from_numpy(pad))


def normalise(video):
    """uint8 ROI tensor -> the model's input ((x / 255 - ROI_MEAN) / ROI_STD)."""
    return (video.float() / 255.0 - lr.ROI_MEAN) / lr.ROI_STD


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m avedge.models.lipreader.data",
                                description="Build (or grow) the lip reader's ROI cache.")
    p.add_argument("bank")
    p.add_argument("--cache", default=None, help="default: BANK/lipreader-cache")
    p.add_argument("--splits", default=",".join(SPLITS))
    p.add_argument("--face-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    try:
        out = build_cache(a.bank, a.cache, [s for s in a.splits.split(",") if s], a.face_seed,
                          progress=lambda m: print(m, flush=True))
    except AvedgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s, c in out.items():
        print(f"{s}: {len(c)} utterances, {len(c.frames)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
