"""Lips-pose metrics: pose error, audio/mouth sync offset, the silence check.

- Pose error: MAE and RMSE over all 12 dims (and jaw_open's alone) against the ground
  truth lips_pose of the phone timings, on the real frames of a window.
- Sync offset (frames): the lag of the peak of the cross-correlation between the audio
  energy envelope (log RMS per 40 ms frame) and jaw_open, both z-scored per item, summed
  over items, lags -MAX_LAG..MAX_LAG; refined to a fraction of a frame by a parabola
  through the peak and its neighbours. Positive: the mouth trails the audio. The same
  figure on the ground-truth poses is reported beside it: the ground truth itself is
  not at lag 0 (the mouth leads the sound by 25 ms and opens for vowels, which are the
  energy peaks, after consonant closures), so the model is judged by the difference.
- Silence: on silent input (exact zeros and a -60 dBFS noise floor) the mean and max
  jaw_open, the mean absolute frame-to-frame change of the pose (stillness) and the
  mean |pose - REST|.

`score_module` (eager) and `measure` (an exported artifact, through avedge.runtime.load
sessions) report the family metric, pose MAE on val-split windows (lower is better).
Without a voice bank the value is null and "reason" says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from avedge.models.corpus.visemes import REST
from avedge.runtime.errors import AvedgeError

METRIC = "pose_mae"
SPLIT = "val"
SEED = 1234
MEASURE_N = 16
MAX_LAG = 5
HOP = 640
JAW = 0  # visemes.DIMS.index("jaw_open")


# ----------------------------------------------------------------------------- metrics

def energy_envelope(audio: np.ndarray, frames: int, hop: int = HOP) -> np.ndarray:
    """(frames,) log RMS (dB) of each 40 ms frame of the audio."""
    a = np.zeros(frames * hop, np.float64)
    n = min(len(audio), len(a))
    a[:n] = audio[:n]
    e = np.sqrt(np.mean(a.reshape(frames, hop) ** 2, axis=1) + 1e-10)
    return 20 * np.log10(e + 1e-5)


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / (x.std() + 1e-9)


def xcorr(envs: list[np.ndarray], jaws: list[np.ndarray], max_lag: int = MAX_LAG) -> np.ndarray:
    """(2*max_lag+1,) summed normalised cross-correlation c(l) = mean_t env[t] jaw[t+l]."""
    lags = np.arange(-max_lag, max_lag + 1)
    c = np.zeros(len(lags))
    for env, jaw in zip(envs, jaws, strict=True):
        e, j = _z(env), _z(jaw)
        n = len(e)
        for k, lag in enumerate(lags):
            lo, hi = max(0, -lag), min(n, n - lag)
            if hi > lo:
                c[k] += float(np.mean(e[lo:hi] * j[lo + lag: hi + lag]))
    return c / max(1, len(envs))


def sync_offset(envs: list[np.ndarray], jaws: list[np.ndarray],
                max_lag: int = MAX_LAG) -> float:
    """Lag (frames, fractional) of the cross-correlation's peak; > 0: jaw trails audio."""
    c = xcorr(envs, jaws, max_lag)
    k = int(np.argmax(c))
    frac = 0.0
    if 0 < k < len(c) - 1:
        den = c[k - 1] - 2 * c[k] + c[k + 1]
        if den < 0:
            frac = 0.5 * (c[k - 1] - c[k + 1]) / den
    return float(k - max_lag + frac)


def pose_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    d = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return {"mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean())),
            "jaw_mae": float(np.abs(d[..., JAW]).mean())}


def silence_stats(pose: np.ndarray) -> dict:
    """pose (..., F, 12) generated on silent input."""
    p = np.asarray(pose, np.float64)
    return {"jaw_mean": float(p[..., JAW].mean()), "jaw_max": float(p[..., JAW].max()),
            "motion": float(np.abs(np.diff(p, axis=-2)).mean()),
            "rest_err": float(np.abs(p - REST).mean())}


# ----------------------------------------------------------------------------- generation

def noise_for(n: int, frames: int, seed: int = 0) -> np.ndarray:
    """(n, frames, 12) standard normal noise, one fixed draw per window."""
    return np.random.default_rng(seed).standard_normal((n, frames, 12)).astype(np.float32)


def generate_eager(sampler, audio: np.ndarray, seed: int = 0, batch: int = 32) -> np.ndarray:
    """sampler: a PoseSampler (eager); audio (N, frames*640) -> pose (N, frames, 12)."""
    import torch

    frames = audio.shape[1] // HOP
    noise = noise_for(len(audio), frames, seed)
    out = []
    sampler.eval()
    with torch.no_grad():
        for k in range(0, len(audio), batch):
            out.append(sampler(torch.from_numpy(audio[k: k + batch]),
                               torch.from_numpy(noise[k: k + batch])).numpy())
    return np.concatenate(out)


def silence_inputs(frames: int) -> np.ndarray:
    """(2, frames*640): exact zeros, and a -60 dBFS white noise floor."""
    rng = np.random.default_rng(7)
    return np.stack([np.zeros(frames * HOP, np.float32),
                     (1e-3 * rng.standard_normal(frames * HOP)).astype(np.float32)])


def score(generate, windows: list[dict], frames: int) -> dict:
    """generate(audio (N, frames*640)) -> pose (N, frames, 12); windows from data.sample
    with rng None. -> pose error, sync offset (model and ground truth), silence stats."""
    audio = np.stack([w["audio"] for w in windows])
    gt = np.stack([w["pose"] for w in windows])
    pred = generate(audio)
    envs = [energy_envelope(a, frames) for a in audio]
    res = pose_errors(pred, gt)
    res["sync_offset"] = round(sync_offset(envs, [p[:, JAW] for p in pred]), 3)
    res["sync_offset_gt"] = round(sync_offset(envs, [g[:, JAW] for g in gt]), 3)
    res["silence"] = {k: round(v, 4) for k, v in
                      silence_stats(generate(silence_inputs(frames))).items()}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


# ----------------------------------------------------------------------------- eval sets

def eval_windows(n: int, bank_dir=None, split: str = SPLIT, seed: int = SEED,
                 holdout_synth: str | None = "piper", frames: int | None = None):
    """n fixed evaluation windows of distinct utterances -> (windows, provenance)."""
    from avedge.models.corpus.voicebank import default_bank_dir, open_bank
    from avedge.models.lipsync import data as D
    from avedge.models.lipsync.pose_flow import WINDOW_FRAMES

    frames = frames or WINDOW_FRAMES
    bank = open_bank(bank_dir or default_bank_dir())
    sp = D.open_split(bank, split, holdout_synth)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.permutation(len(sp))[:n])
    windows = [D.sample(sp, int(i), None, frames) for i in pick]
    prov = {"bank": str(bank.root), "split": split, "holdout_synth": holdout_synth,
            "seed": seed, "n": len(windows), "frames": frames,
            "conditions": "clean, 0.4 s of silence then speech, fixed noise seed"}
    return windows, prov


def _result(res: dict, prov: dict) -> dict:
    return {"name": METRIC, "value": round(res["mae"], 4), "higher_is_better": False,
            "n": prov["n"], "backend": prov.get("backend"), "eval_set": prov, "details": res}


def _unavailable(exc: Exception) -> dict:
    return {"name": METRIC, "value": None, "higher_is_better": False,
            "reason": f"no lips-pose eval data: {exc}"}


def score_module(module, n: int = MEASURE_N) -> dict:
    """Pose MAE of an eager PoseSampler (or PoseFlow, sampled with the defaults)."""
    from avedge.models.lipsync.pose_flow import PoseFlow
    from avedge.models.lipsync.sampler import PoseSampler

    sampler = PoseSampler(module) if isinstance(module, PoseFlow) else module
    frames = sampler.flow.frames
    try:
        windows, prov = eval_windows(n, frames=frames)
    except AvedgeError as exc:
        return _unavailable(exc)
    res = score(lambda a: generate_eager(sampler, a), windows, frames)
    return _result(res, {**prov, "backend": "eager"})


def artifact_generator(artifact_dir, backend: str | None = None):
    """-> (generate(audio (N, F*640)) -> pose (N, F, 12), frames, backend name) running
    the artifact's "pose" graph window by window through the runtime."""
    from avedge.runtime import load

    session = _pose_session(load(Path(artifact_dir), backend=backend))
    frames = int(session.spec.input("noise").shape[1])

    def generate(audio: np.ndarray) -> np.ndarray:
        noise = noise_for(len(audio), frames)
        return np.concatenate([session.run_ordered([audio[k: k + 1], noise[k: k + 1]])[0]
                               for k in range(len(audio))])

    return generate, frames, session.backend


def _pose_session(loaded):
    """The "pose" graph's session of a loaded artifact (a pipeline or a lone graph)."""
    from avedge.runtime.pipeline import Pipeline

    return loaded["pose"] if isinstance(loaded, Pipeline) else loaded


def measure(artifact_dir, n: int = MEASURE_N, backend: str | None = None) -> dict:
    """Pose MAE of an exported lips-pose artifact through the runtime."""
    try:
        generate, frames, name = artifact_generator(artifact_dir, backend)
        windows, prov = eval_windows(n, frames=frames)
    except AvedgeError as exc:
        return _unavailable(exc)
    return _result(score(generate, windows, frames), {**prov, "backend": name})


# ----------------------------------------------------------------------------- window edges

def edge_profile(generate, split, n: int, frames: int, seed: int = SEED,
                 per_utt: int = 4) -> dict:
    """Pose MAE by frame position in the window, on windows cut at random starts across
    whole-utterance timelines (so every position sees the same mix of speech and
    silence): how much worse the right edge is, whose audio future is cut off. A live
    stream must hold back the frames that are worse: `lookahead` is the least number of
    right-edge frames to drop so that the rest are within twice the error of the
    window's middle (a stricter bound costs 40 ms of latency per frame for errors that
    are already below the whole window's mean; the shipped weights: 3 frames at 2x,
    7 at 1.1x)."""
    from avedge.models.lipsync import data as D

    rng = np.random.default_rng(seed)
    audio, gt = [], []
    for i in sorted(rng.permutation(len(split))[:n]):
        tl, phones, _ = D.timeline(split, int(i), None)
        last = len(tl) // HOP - frames // 2
        for s in rng.integers(-frames // 2, max(1 - frames // 2, last), size=per_utt):
            a, p = D.cut(tl, phones, int(s), frames)
            audio.append(a)
            gt.append(p)
    err = np.abs(generate(np.stack(audio)) - np.stack(gt)).mean(axis=(0, 2))  # (frames,)
    middle, lookahead = edge_lookahead(err)
    return {"mae_by_position": [round(float(e), 4) for e in err], "middle": round(middle, 4),
            "lookahead": lookahead, "windows": len(audio)}


def edge_lookahead(err: np.ndarray, tolerance: float = 2.0) -> tuple[float, int]:
    """(median error of the middle half, number of right-edge frames above tolerance *
    that median, counted from the edge up to the first one within it)."""
    frames = len(err)
    middle = float(np.median(err[frames // 4: 3 * frames // 4]))
    lookahead = 0
    while lookahead < frames // 2 and err[frames - 1 - lookahead] > tolerance * middle:
        lookahead += 1
    return middle, lookahead
