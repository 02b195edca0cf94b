"""Training windows for lips-pose: audio from the voice bank, ground-truth poses from the
phone timings (models/corpus/visemes.py lips_pose), WINDOW_FRAMES frames each.

A window is cut from a short timeline: silence, an utterance, a pause of 0.1-0.8 s,
sometimes a second utterance of the same split, silence. Its start is drawn anywhere
from before the first utterance to past the last, so windows hold speech onsets and
offsets at every position, pauses mid-window, and whole windows of silence: silence
-> the REST pose is learned from real transitions, not only from empty windows. The
target is lips_pose of the timeline's phones (shifted by the window's start), so
it is exact for whatever was cut; edges of a window see truncated audio exactly as a
live stream's newest frames do.

Augmentation (training only), after FlashLips-style robustness to level and noise:
a random smooth EQ (+-8 dB, half the windows), gain -20..+6 dB, speed 0.9-1.1 (the phone times scale with it), a noise floor
(white/pink, -70..-35 dBFS: a microphone is never digitally silent), and for 35 %
of windows noise or babble (2-4 other voices) at 5..25 dB SNR over the speech.
Another 5 % are pure silence/noise floor windows (REST everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from avedge.models.corpus.augment import SPEEDS, colored_noise, eq, rms, speed
from avedge.models.corpus.visemes import REST, lips_pose
from avedge.models.lipsync.pose_flow import FPS, HOP_SAMPLES, SAMPLE_RATE, WINDOW_FRAMES
from avedge.runtime.errors import AvedgeError

SPEED_FACTORS = tuple(sorted(SPEEDS))


@dataclass
class Split:
    """The utterances of one split of a bank (optionally without one synthesizer)."""

    bank: object  # models.corpus.voicebank.VoiceBank
    utts: list  # [BankUtt]
    name: str

    def __len__(self) -> int:
        return len(self.utts)

    def draw(self, rng: np.random.Generator, n: int, min_share: float = 0.0) -> np.ndarray:
        """n utterance indices; each synthesizer drawn at least `min_share` of the time
        (then renormalised). The bank is 97 % espeak: a run that draws by count hears a
        neural voice (Kokoro) in 2.5 % of its windows and fits them badly (mid-run pose
        MAE 0.043 on Kokoro train utterances against 0.022 on espeak val ones); the
        held-out piper voice is neural too."""
        synths = np.array([u.synth for u in self.utts])
        names, counts = np.unique(synths, return_counts=True)
        p = np.maximum(counts / counts.sum(), min_share)
        p /= p.sum()
        which = rng.choice(len(names), size=n, p=p)
        return np.array([rng.choice(np.flatnonzero(synths == names[k])) for k in which])


def open_split(bank, split: str, holdout_synth: str | None) -> Split:
    """The bank's `split` voices (voices.split_of with holdout_synth: that synthesizer is
    the test split, kept out of train and val)."""
    voices = bank.voices_in(split, holdout_synth or None, timed=True)
    utts = [u for v in voices for u in bank.by_voice[v]]
    if not utts:
        raise AvedgeError(f"the bank at {bank.root} has no {split}-split utterances "
                          f"(holdout_synth {holdout_synth!r})")
    return Split(bank, utts, split)


def _place(tl: np.ndarray, x: np.ndarray, at: int) -> None:
    tl[at: at + len(x)] += x[: max(0, len(tl) - at)]


def timeline(split: Split, i: int, rng: np.random.Generator | None):
    """-> (audio (n,), phones [[ph, s, e]], voice) of a timeline around utterance i:
    lead silence, utterance i, and (training, 50 %) a pause and a second utterance."""
    u = split.utts[i]
    fac = 1.0 if rng is None else float(SPEED_FACTORS[rng.integers(len(SPEED_FACTORS))])
    parts = [(split.bank.audio(u), u.phones)]
    if rng is not None and rng.random() < 0.5:
        v = split.utts[int(rng.integers(len(split)))]
        parts.append((split.bank.audio(v), v.phones))
    lead = 1.0 if rng is None else float(rng.uniform(0.3, 1.2))
    pause = 0.0 if rng is None else float(rng.uniform(0.1, 0.8))
    segs, phones, t = [], [], lead
    for audio, ph in parts:
        a = speed(audio, fac) if fac != 1.0 else audio
        segs.append((a, t))
        # speed(x, f) plays the utterance f times faster: every time divides by f
        phones += [[p, t + s / fac, t + e / fac] for p, s, e in ph]
        t += len(a) / SAMPLE_RATE + pause
    total = int((t + 1.0) * SAMPLE_RATE)
    out = np.zeros(total, np.float32)
    for a, at in segs:
        _place(out, a, round(at * SAMPLE_RATE))
    return out, phones, u.voice


def cut(audio: np.ndarray, phones: list, start: int, frames: int = WINDOW_FRAMES):
    """The window of `frames` frames starting at frame `start` of a timeline (negative or
    past the end: silence) -> (audio (frames*640,), pose (frames, 12))."""
    n = frames * HOP_SAMPLES
    out = np.zeros(n, np.float32)
    s0 = start * HOP_SAMPLES
    lo, hi = max(0, s0), min(len(audio), s0 + n)
    if hi > lo:
        out[lo - s0: hi - s0] = audio[lo:hi]
    pose = lips_pose(phones, frames, FPS, offset=-start / FPS)
    return out, pose


def _babble(split: Split, n: int, voice: str, rng: np.random.Generator, talkers: int):
    out = np.zeros(n, np.float32)
    for _ in range(talkers):
        u = split.utts[int(rng.integers(len(split)))]
        if u.voice == voice:
            continue
        x = split.bank.audio(u)
        if len(x):
            out += np.roll(np.resize(x, n), int(rng.integers(n))) / rms(x)
    return out


def augment(x: np.ndarray, split: Split, voice: str, rng: np.random.Generator) -> np.ndarray:
    """EQ, gain, noise or babble over the speech, and a noise floor (see the docstring)."""
    if rng.random() < 0.5:  # another microphone / synthesizer timbre
        x = eq(x, rng)
    x = x * np.float32(10 ** (rng.uniform(-20, 6) / 20))
    if rng.random() < 0.35 and rms(x) > 1e-4:
        snr = rng.uniform(5, 25)
        noise = (_babble(split, len(x), voice, rng, int(rng.integers(2, 5)))
                 if rng.random() < 0.5 else colored_noise(len(x), ("white", "pink")[
                     int(rng.integers(2))], rng))
        if rms(noise) > 1e-6:
            x = x + noise * np.float32(rms(x) / (rms(noise) * 10 ** (snr / 20)))
    if rng.random() < 0.7:
        floor = 10 ** (rng.uniform(-70, -35) / 20)
        x = x + np.float32(floor) * colored_noise(len(x), ("white", "pink")[
            int(rng.integers(2))], rng)
    return np.clip(x, -1, 1).astype(np.float32)


def sample(split: Split, i: int, rng: np.random.Generator | None,
           frames: int = WINDOW_FRAMES) -> dict:
    """One window around utterance i: {"audio", "pose", "voice"}. rng None: the
    evaluation window (no augmentation, starting 0.4 s before the speech)."""
    if rng is not None and rng.random() < 0.05:  # silence / noise floor only
        audio = np.zeros(frames * HOP_SAMPLES, np.float32)
        return {"audio": augment(audio, split, "", rng), "voice": "",
                "pose": np.tile(REST, (frames, 1))}
    tl, phones, voice = timeline(split, i, rng)
    n_frames = len(tl) // HOP_SAMPLES
    if rng is None:
        start = int(0.6 * FPS)  # lead is 1.0 s: 0.4 s of silence, then speech
    else:
        start = int(rng.integers(-frames // 4, max(1, n_frames - 3 * frames // 4)))
    audio, pose = cut(tl, phones, start, frames)
    if rng is not None:
        audio = augment(audio, split, voice, rng)
    return {"audio": audio, "pose": pose, "voice": voice}


def collate(samples: list[dict]):
    """-> audio (B, frames*640) float32, pose (B, frames, 12) float32 (numpy)."""
    return (np.stack([s["audio"] for s in samples]).astype(np.float32),
            np.stack([s["pose"] for s in samples]).astype(np.float32))
