"""Training of lips-pose (`avedge train lips-pose`).

    avedge train lips-pose --corpus BANK --out /work/bench/lipsync/lips_pose.safetensors \
        --minutes 60 --threads 1

Data: windows of WINDOW_FRAMES frames cut from short timelines of the bank's train-split
utterances (models/lipsync/data.py: pauses, onsets, silence, gain, noise, babble),
targets lips_pose of the phone timings. The held-out synthesizer (piper) is neither
trained on nor used as babble; it is the test split.

Loss: conditional flow matching (rectified flow: x_t = (1 - t) x0 + t x1, target
velocity x1 - x0, x0 ~ N(0, 1), x1 = the pose in model space), t drawn from a
logit-normal-ish mix that favours the middle but keeps both ends (the 4-step sampler
evaluates t = 0, .25, .5, .75); plus an L1 loss on the one-step estimate
x1_hat = x_t + (1 - t) v weighted by AUX_WEIGHT: the target is nearly a function of
the audio, and an L1 on the pose itself sharpens closures and onsets (sync) that the
squared velocity loss averages out. The audio is replaced by the null token for 10 %
of windows (classifier-free guidance stays available; the default sampler does not
use it).

Validation every `eval_every` steps on fixed val-split windows, through the 4-step
sampler: pose MAE/RMSE, sync offset (model and ground truth), silence jaw/motion.
Resumable (models/common/trainer.py): the checkpoint beside OUT resumes the run; OUT
holds the moving average of the weights (`--ema`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from avedge.models.common import trainer
from avedge.models.common.batch_loader import BatchLoader, check_workers
from avedge.models.common.weight_average import WeightAverage, check_decay
from avedge.models.lipsync import data as D
from avedge.models.lipsync import evaluate as E
from avedge.models.lipsync import pose_flow as pf
from avedge.models.lipsync.sampler import PoseSampler
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json

AUX_WEIGHT = 1.0


@dataclass
class TrainConfig:
    corpus: str = ""  # voice bank directory (empty: the corpus default)
    # Weights file to write (.safetensors); its record (.json) and checkpoint (.ckpt.pt)
    # go beside it. Without a checkpoint a run warm-starts from this file if it exists.
    out: str = str(pf.WEIGHTS_FILE)
    init: str | None = None  # trained weights to start a new run from
    steps: int = 20000  # schedule length (cosine decay); a run may stop earlier
    # The cosine schedule also ends after this many minutes of training steps (across
    # resumes), whichever comes first: steps per hour on a shared CPU are not known ahead
    anneal_minutes: float | None = None
    batch: int = 16  # windows per step
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-2  # AdamW's
    warmup: int = 300  # steps of linear learning-rate warmup
    clip: float = 1.0  # gradient norm clip
    seed: int = 0  # sample draws and init
    holdout_synth: str = "piper"  # synthesizer kept out of training (the test split)
    p_uncond: float = 0.1  # fraction of windows whose audio is dropped (CFG)
    # Each synthesizer of the train split is drawn at least this share of the windows
    # (the bank is 97 % espeak; the neural voices need more than their count)
    min_synth_share: float = 0.25
    aux_weight: float = AUX_WEIGHT  # L1 on the one-step pose estimate
    eval_every: int = 500  # steps between validation scores (the record's history)
    eval_n: int = 48  # validation windows
    checkpoint_minutes: float = 5.0  # wall time between checkpoints
    minutes: float | None = None  # wall budget of this invocation
    threads: int = 1  # torch threads
    workers: int = 1  # batch-drawing workers (1 = a background thread)
    ema: float = 0.999  # decay of the weights' moving average that OUT holds (0: none)
    precision: str = "fp32"  # of the training step: fp32 or bf16
    device: str = "cpu"  # torch device of the steps (cpu, cuda, cuda:N)
    # Model dimensions, JSON of lips-pose Dims names (default: the shipped size)
    dims: dict = field(default_factory=lambda: asdict(pf.Dims()),
                       metadata={"keys": "dimension"})
    frames: int = pf.WINDOW_FRAMES  # window length in frames

    def paths(self) -> tuple[Path, Path, Path]:
        """(weights, record, checkpoint)."""
        return tuple(vars(trainer.RunFiles.beside(self.out)).values())


def lr_at(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Linear warmup, then cosine to 5 % of the peak at `steps` (or anneal_minutes)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.anneal_minutes:
        t = max(t, min(1.0, seconds / (cfg.anneal_minutes * 60)))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class BankData:
    """The bank's splits, opened on first use."""

    def __init__(self, cfg: TrainConfig):
        from avedge.models.corpus.voicebank import open_bank

        self.cfg = cfg
        self.bank = open_bank(cfg.corpus or None)
        self.splits: dict[str, D.Split] = {}

    def split(self, name: str) -> D.Split:
        if name not in self.splits:
            self.splits[name] = D.open_split(self.bank, name, self.cfg.holdout_synth or None)
        return self.splits[name]

    def describe(self) -> dict:
        out = {"bank": str(self.bank.root), "holdout_synth": self.cfg.holdout_synth,
               "generator_version": self.bank.info().get("generator_version")}
        for name, s in self.splits.items():
            out[name] = {"utterances": len(s), "voices": len({u.voice for u in s.utts}),
                         "synths": sorted({u.synth for u in s.utts})}
        return out


def make_batch(cfg: TrainConfig, split: D.Split, step: int):
    """The batch of optimizer step `step`: a pure function of (split, cfg, step)."""
    rng = np.random.default_rng([cfg.seed, step])
    items = split.draw(rng, cfg.batch, cfg.min_synth_share)
    audio, pose = D.collate([D.sample(split, int(i), rng, cfg.frames) for i in items])
    cond = (rng.random(cfg.batch) >= cfg.p_uncond).astype(np.float32)
    x0 = rng.standard_normal(pose.shape).astype(np.float32)
    # t: half uniform, half logit-normal (the middle of the path is the hardest to learn)
    t = np.where(rng.random(cfg.batch) < 0.5, rng.random(cfg.batch),
                 1 / (1 + np.exp(-rng.standard_normal(cfg.batch)))).astype(np.float32)
    return tuple(torch.from_numpy(a) for a in (audio, pose, cond, x0, t))


def flow_loss(model: pf.PoseFlow, batch, aux_weight: float) -> tuple[torch.Tensor, dict]:
    audio, pose, cond, x0, t = batch
    x1 = pf.to_model_space(pose)
    tt = t[:, None, None]
    xt = (1 - tt) * x0 + tt * x1
    v = model(audio, xt, t, cond)
    fm = torch.mean((v - (x1 - x0)) ** 2)
    x1_hat = xt + (1 - tt) * v
    aux = torch.mean(torch.abs(x1_hat - x1) * cond[:, None, None])
    return fm + aux_weight * aux, {"fm": float(fm.detach()), "aux": float(aux.detach())}


def warm_start(path: str, model: pf.PoseFlow) -> dict:
    p = Path(path)
    if p.name.endswith(".ckpt.pt"):
        ck = trainer.load_checkpoint(p)
        sd = ck["ema"]["model"] if ck.get("ema") else ck["model"]
        steps, minutes = ck["state"]["step"], ck["state"]["train_seconds"] / 60
    else:
        sd = pf.load_weights(p).state_dict()
        rec = p.with_suffix(".json")
        meta = json.loads(rec.read_text()) if rec.is_file() else {}
        steps, minutes = meta.get("steps"), meta.get("train_minutes")
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise AvedgeError(f"{path!r} does not fit dims {asdict(model.dims)}: pass their "
                          f"--dims, or --fresh to start from scratch") from exc
    return {"from": p.name, "steps": steps, "train_minutes": minutes}


def val_score(model: pf.PoseFlow, windows: list[dict], frames: int) -> dict:
    """The evaluate.py scores through the default 4-step sampler (reference attention)."""
    model.eval()
    sampler = PoseSampler(model)
    return E.score(lambda a: E.generate_eager(sampler, a), windows, frames)


def train(cfg: TrainConfig, data=None, fresh: bool = False, progress: bool = True,
          log=print) -> dict:
    """Train (or resume) per cfg. `data` defaults to BankData(cfg). -> the record dict."""
    torch.set_num_threads(cfg.threads)
    files = trainer.RunFiles.beside(cfg.out)
    out = files.weights
    out.parent.mkdir(parents=True, exist_ok=True)
    dims = pf.Dims.from_json(cfg.dims)
    check_workers(cfg.workers)
    check_decay(cfg.ema)
    trainer.check_precision(cfg.precision)
    if cfg.frames < 8:
        raise AvedgeError(f"--frames must be >= 8; got {cfg.frames}")
    dev = trainer.check_device(cfg.device)
    start = trainer.starting_point(files, cfg.init, fresh, dev)
    data = data or BankData(cfg)
    train_set = data.split("train")
    torch.manual_seed(cfg.seed)
    model = pf.PoseFlow(dims, cfg.frames).to(dev)
    model.use_op = False  # the op has no backward: the reference is the same function
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = trainer.new_state()
    ema_state = None
    if start.kind == "checkpoint":
        ck = start.checkpoint
        if (ck_dims := pf.Dims.from_json(ck["config"]["dims"])) != dims:
            raise AvedgeError(f"checkpoint {files.checkpoint} has dims {asdict(ck_dims)}, "
                              f"this run {asdict(dims)}: pass its --dims, or --fresh")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        ema_state = ck.get("ema")
        log(f"resuming from {files.checkpoint} at step {state['step']}")
    elif start.kind == "weights":
        cfg = replace(cfg, init=str(start.weights))
        state["warm_start"] = warm_start(cfg.init, model)
        log(f"starting from {cfg.init}")
    avg = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    if avg and ema_state:
        avg.load_state_dict(ema_state)
    if avg:
        avg.model.use_op = False
    val = {"set": None}

    def val_set():
        if val["set"] is None:
            try:
                sp = data.split("val")
                rng = np.random.default_rng(E.SEED)
                pick = sorted(rng.permutation(len(sp))[: cfg.eval_n])
                val["set"] = [D.sample(sp, int(i), None, cfg.frames) for i in pick]
            except AvedgeError as exc:
                log(f"no validation yet: {exc}")
        return val["set"]

    def record(final: dict | None = None) -> dict:
        rec = {"family": pf.NAME, "weights": out.name, "dims": asdict(dims),
               "frames": cfg.frames, "params": sum(p.numel() for p in model.parameters()),
               "corpus": data.describe(), "config": asdict(cfg),
               "steps": state["step"], "samples": state["samples"],
               "audio_hours": round(state["samples"] * cfg.frames / pf.FPS / 3600, 2),
               "train_minutes": round(state["train_seconds"] / 60, 1),
               "sessions": state["sessions"], "machine": trainer.machine(),
               "history": state["history"][-40:]}
        if "warm_start" in state:
            rec["warm_start"] = state["warm_start"]
        if final:
            rec["eval"] = final
        elif (files.record.exists() and "eval" in (old := json.loads(files.record.read_text()))
              and old.get("steps") == state["step"]):
            rec["eval"] = old["eval"]
        return rec

    def step(k: int, batch) -> tuple[float, dict]:
        batch = tuple(b.to(dev) for b in batch)
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, k, state["train_seconds"])
        with trainer.autocast(dev, cfg.precision):
            loss, parts = flow_loss(model, batch, cfg.aux_weight)
        gnorm = trainer.optimizer_step(loss, opt, model.parameters(), cfg.clip, avg, model, k)
        state["samples"] += cfg.batch
        return float(loss.detach()), {"fm": f"{parts['fm']:.3f}", "aux": f"{parts['aux']:.3f}",
                                      "gnorm": f"{gnorm:.2f}"}

    def evaluate_now(k: int) -> dict | None:
        if not val_set():
            return None
        entry = {"val": val_score(model, val_set(), cfg.frames)}
        if avg:
            entry["val_ema"] = val_score(avg.model, val_set(), cfg.frames)
        best = entry.get("val_ema", entry["val"])
        log(f"step {k}: loss {state.get('loss_ema', float('nan')):.3f}, val MAE "
            f"{best['mae']:.4f}, sync {best['sync_offset']:+.2f} (gt "
            f"{best['sync_offset_gt']:+.2f}), silence jaw {best['silence']['jaw_mean']:.3f}")
        return entry

    def save() -> None:
        trainer.save_averaged_run(files, model, avg, opt, state, asdict(cfg), pf.save_weights,
                                  record())

    loader = BatchLoader(functools.partial(make_batch, cfg), train_set, state["step"],
                         cfg.workers)
    trainer.run_loop(state, trainer.LoopSettings(cfg.steps, cfg.minutes, cfg.checkpoint_minutes,
                                                 cfg.eval_every),
                     batches=loader, step=step, evaluate=evaluate_now,
                     save=save, progress=progress, log=log)
    log(f"saved {out} and {files.checkpoint} at step {state['step']}")
    return record()


def final_eval(cfg: TrainConfig, n: int = 200, data=None, log=print) -> dict:
    """Val and test split (test = the held-out synthesizer's voice): pose error, sync,
    silence, through the default sampler; written into the record."""
    out, rec_path, _ = cfg.paths()
    data = data or BankData(cfg)
    model = pf.load_weights(out)
    res = {}
    for name in ("val", "test"):
        try:
            sp = data.split(name)
        except AvedgeError as exc:
            log(f"no {name} split: {exc}")
            continue
        rng = np.random.default_rng(E.SEED)
        pick = sorted(rng.permutation(len(sp))[:n])
        windows = [D.sample(sp, int(i), None, model.frames) for i in pick]
        res[name] = {"n": len(windows), **val_score(model, windows, model.frames)}
        synths = sorted({u.synth for u in sp.utts})
        if len(synths) > 1:  # the neural voices are few: their own figure
            for synth in synths:
                one = D.Split(sp.bank, [u for u in sp.utts if u.synth == synth], name)
                pick = sorted(np.random.default_rng(E.SEED).permutation(len(one))[:n])
                ws = [D.sample(one, int(i), None, model.frames) for i in pick]
                res[f"{name}_{synth}"] = {"n": len(ws), **val_score(model, ws, model.frames)}
        if name == "val":  # how many right-edge frames a live stream must hold back
            res["edge_profile"] = E.edge_profile(
                functools.partial(E.generate_eager, PoseSampler(model)), sp, min(n, 50),
                model.frames)
    res["conditions"] = ("windows of whole-utterance timelines (0.4 s silence, then speech), "
                         "clean, eager fp32, 4 Euler steps, guidance 1, noise seed 0")
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rec["eval"] = res
    rec.setdefault("corpus", {}).update(data.describe())
    atomic_write_json(rec_path, rec, indent=1)
    return res
