"""Fit the speech extractor to an NPU: prune its MLPs to the width the NPU's time budget
allows, then fine-tune it quantization-aware in the form and precision the NPU runs.

    avedge train speech-extractor-npu --target hearable-npu --mlp-width 128 \
        --steps 4000 --out models/speech_extractor/weights/speech_extractor_npu.safetensors

Why: on an Ethos-U55 the per-chunk time follows the weight count (Vela: 1.25 ms at MLP
width 256, 0.90 ms at 128), and post-training int8 of the trained model loses dB that
only training with the integer grid in the loop wins back. So:

1. start from the shipped float weights (`--init`), drop the least used MLP units of
   every block (quantize/prune.py; importance from the calibration streams);
2. build the NPU form (models/speech_extractor/npu.py: FiLM hoisted, ring taps, power scale)
   and its whole-utterance twin `RingExtractor.utterance` (same ops, T frames at once);
3. export that through the target's quantizer with QAT observers (targets/arm_precision:
   int8, int16 into the log) and train it on corpus mixtures, negative SI-SDR; the
   speaker encoder and FiLM projection stay fixed (they run in fp32 on the phone);
4. write the weights back into a plain `Extractor` (same file format as the shipped
   weights, its own dims) with a record; `avedge export speech-extractor --target
   hearable-npu` picks this file up (speech_extractor.NPU_WEIGHTS_FILE).

Resumable like the float trainer (models/common/trainer.py): OUT.ckpt.pt every few minutes
and on SIGTERM/Ctrl-C. Without that checkpoint a run continues from the tuned weights in
OUT when they exist (fresh observers, schedule started over), else prunes `--init` again;
`--fresh` always prunes `--init` again.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from avedge.models.common import trainer
from avedge.models.common.batch_loader import BatchLoader
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import npu
from avedge.models.speech_extractor import train as tx
from avedge.runtime.errors import AvedgeError


@dataclass
class TrainConfig:
    corpus: str = ""  # voice bank directory (empty: the corpus default, models/corpus)
    # Tuned weights to write (.safetensors; record and checkpoint beside it). Without a
    # checkpoint a run continues from this file when it exists (else prunes --init).
    out: str = str(se.NPU_WEIGHTS_FILE)
    init: str = str(se.MASK_WEIGHTS_FILE)  # the plain-mask float model to prune and tune
    target: str = "hearable-npu"  # whose quantizer (precision scheme) is trained against
    mlp_width: int = 128  # MLP hidden units kept per block (0: keep the init's)
    log_ranges: int = 1  # int16 log tables in the features (extractor_npu.ranged_log_power)
    steps: int = 4000  # schedule length (cosine decay); a run may stop earlier
    batch: int = 8  # mixtures per step
    seconds: float = 2.0  # training crops (the QAT graph has one static shape)
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 1e-2  # AdamW's
    warmup: int = 100  # steps of linear learning-rate warmup
    clip: float = 5.0  # gradient norm clip
    seed: int = 0  # corpus draws
    holdout_synth: str | None = "piper"  # synthesizer kept out of training
    natural_share: float = 0.5  # share of training targets from neural (non-espeak) voices
    eval_every: int = 250  # steps between validation scores (the record's history)
    eval_n: int = 16  # validation mixtures
    checkpoint_minutes: float = 5.0  # wall time between checkpoints
    minutes: float | None = None  # wall budget of this invocation
    threads: int = 2  # torch threads

    def paths(self) -> tuple[Path, Path, Path]:
        """(weights, record, checkpoint)."""
        return tuple(vars(trainer.RunFiles.beside(self.out)).values())

    @property
    def samples(self) -> int:
        return int(self.seconds * se.SAMPLE_RATE) // se.CHUNK * se.CHUNK


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


# ----------------------------------------------------------------------------- model

@torch.no_grad()
def pruned(model: se.Extractor, width: int) -> se.Extractor:
    """A copy of `model` with `width` MLP units per block, chosen on calibration streams."""
    from avedge.quantize.prune import prune_hidden, unit_importance

    if width in (0, model.dims.d_hidden):
        return copy.deepcopy(model)
    acts: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(model.blocks))}
    hooks = [blk.act.register_forward_hook(lambda m, i, o, k=k: acts[k].append(o))
             for k, blk in enumerate(model.blocks)]
    try:
        for enroll, mix in model.calibration_pairs():
            se.extract(model, mix, model.speaker_encoder(enroll))
    finally:
        for h in hooks:
            h.remove()
    out = se.Extractor(replace(model.dims, d_hidden=width))
    state = {k: v for k, v in model.state_dict().items() if ".fc1." not in k and ".fc2." not in k}
    out.load_state_dict(state, strict=False)
    for k, (src, dst) in enumerate(zip(model.blocks, out.blocks)):
        imp = unit_importance(torch.cat([a.reshape(-1, a.shape[-1]) for a in acts[k]]), src.fc2)
        dst.fc1, dst.fc2 = prune_hidden(src.fc1, src.fc2, imp, width)
    out.speaker_encoder.load_state_dict(model.speaker_encoder.state_dict())
    return out.eval()


@torch.no_grad()
def ring_into(ring: npu.RingExtractor, model: se.Extractor) -> None:
    """Copy a (trained) NPU form's weights back into the plain extractor it came from."""
    model.in_proj.weight.copy_(ring.in_proj.weight)
    model.in_proj.bias.copy_(ring.in_proj.bias - se.FEATURE_SCALE * ring.log_offset
                             * ring.in_proj.weight.sum(1))
    model.blocks.load_state_dict(ring.blocks.state_dict())
    model.out_norm.load_state_dict(ring.out_norm.state_dict())
    model.out_proj.load_state_dict(ring.out_proj.state_dict())


class Setup:
    """The student (plain Extractor), its NPU form, the frozen condition, the QAT graph."""

    def __init__(self, cfg: TrainConfig, student: se.Extractor, example: tuple):
        """example: (mixture (batch, samples), enrollment) from the corpus: the QAT
        graph's shape, and the float ranges its singular ops are kept finite with."""
        from avedge.quantize.qat import QatGraph
        from avedge.targets import get_target
        from avedge.targets.arm.lower import ethos_u_spec
        from avedge.targets.arm.precision import ACTIVATIONS, ethos_u_quantizer

        target = get_target(cfg.target)  # an NPU board line (checked by `train`)
        self.student = student
        self.condition = npu.FilmCondition(student)
        self.ring = npu.RingExtractor(student, npu.power_scale_for(student), cfg.log_ranges)
        self.scheme = ACTIVATIONS[target.precision]
        example = (example[0], self.film(example[1]))
        quantizer = ethos_u_quantizer(ethos_u_spec(target), self.scheme, qat=True)
        self.qat = QatGraph(npu.WholeUtterance(self.ring), example, quantizer)

    def film(self, enrollments: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.condition(enrollments)

    def finish(self) -> se.Extractor:
        self.qat.write_back()
        ring_into(self.ring, self.student)
        return self.student


# ----------------------------------------------------------------------------- data

def fixed_length(batch, n: int):
    """Crop or zero-pad (mixture, target) of a batch to n samples (the static shape)."""
    mix, tgt, enr, _ = batch

    def fit(x):
        return x[:, :n] if x.shape[1] >= n else torch.nn.functional.pad(x, (0, n - x.shape[1]))
    return fit(mix), fit(tgt), enr


def eval_batches(examples: list[dict], cfg: TrainConfig) -> list[tuple]:
    """Val mixtures cropped to the static shape, in full batches."""
    n = cfg.samples
    out = []
    usable = len(examples) // cfg.batch * cfg.batch
    for k in range(0, usable, cfg.batch):
        exs = examples[k: k + cfg.batch]
        mix = torch.stack([_fit(e["mixture"], n) for e in exs])
        tgt = torch.stack([_fit(e["target"], n) for e in exs])
        enr = torch.stack([se.fit_enrollment(torch.from_numpy(np.ascontiguousarray(
            e["enrollment"], np.float32))) for e in exs])
        out.append((mix, tgt, enr))
    return out


def _fit(x, n: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(x[:n], np.float32))
    return torch.nn.functional.pad(x, (0, n - x.shape[0]))


def aligned_loss(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Per-example SI-SDR of the output against the target, undoing the lookahead lag."""
    return se.si_sdr(out[:, se.LOOKAHEAD:], tgt[:, : tgt.shape[1] - se.LOOKAHEAD])


@torch.no_grad()
def evaluate(setup: Setup, batches: list[tuple]) -> dict:
    """SI-SDRi (dB) of the QAT graph (the NPU's arithmetic, simulated) and of the float
    NPU form on the same val crops."""
    setup.qat.write_back()  # the float form scores the weights trained so far
    setup.qat.observe(False)
    res = {}
    for name, fn in (("qat", setup.qat), ("float", npu.WholeUtterance(setup.ring))):
        gains = []
        for mix, tgt, enr in batches:
            gains.append(aligned_loss(fn(mix, setup.film(enr)), tgt) - aligned_loss(
                torch.nn.functional.pad(mix, (se.LOOKAHEAD, 0))[:, :mix.shape[1]], tgt))
        res[f"{name}_si_sdri_db"] = round(float(torch.cat(gains).mean()), 3)
    setup.qat.observe(True)
    return res


# ----------------------------------------------------------------------------- loop

def npu_batch(cfg: TrainConfig, data_cfg, phase: int, data, step: int):
    """The (mixture, target, enrollment) batch of step `step`, cropped to the static shape."""
    return fixed_length(tx.make_batch(data, data_cfg, phase, step * cfg.batch,
                                      np.random.default_rng([cfg.seed, 7, step])), cfg.samples)


def tuned_start(path: Path, cfg: TrainConfig, teacher: se.Extractor) -> se.Extractor:
    """Weights this trainer wrote before (OUT without its checkpoint: a fresh clone, a GPU
    machine) as the student, when they are of this run's width and log form."""
    student = se.load_weights(path)
    width = cfg.mlp_width or teacher.dims.d_hidden
    if student.dims.d_hidden != width or student.npu_log_ranges != cfg.log_ranges:
        raise AvedgeError(f"{str(path)!r} was tuned at MLP width {student.dims.d_hidden} with "
                          f"{student.npu_log_ranges} log table(s), this run asks {width} and "
                          f"{cfg.log_ranges}: pass those, or --fresh to prune --init again")
    return student


def train(cfg: TrainConfig, data=None, fresh: bool = False, progress: bool = True,
          log=print) -> dict:
    """Fine-tune per cfg -> the record. Starts from the checkpoint beside cfg.out, else
    from the tuned weights in cfg.out, else from cfg.init pruned (models/common/trainer.py;
    --fresh: from cfg.init pruned)."""
    from avedge.targets import get_target
    from avedge.targets.arm.lower import arm_toolchain_missing

    if not getattr(get_target(cfg.target), "npu", None):  # before the corpus is read
        raise AvedgeError(f"target {cfg.target!r} has no NPU; QAT fine-tuning is for the "
                          f"Ethos-U board lines (hearable-npu, ethos-u85)")
    if cfg.log_ranges < 1:
        raise AvedgeError(f"--log-ranges wants the number of int16 log tables, >= 1 (1: one "
                          f"table, what the shipped weights use); got {cfg.log_ranges}")
    missing = arm_toolchain_missing()
    if missing:
        raise AvedgeError(f"fine-tuning for {cfg.target!r} trains against its quantizer: {missing}")
    torch.set_num_threads(cfg.threads)
    files = trainer.RunFiles.beside(cfg.out)
    out = files.weights
    out.parent.mkdir(parents=True, exist_ok=True)  # before minutes of training, not at the save
    data_cfg = tx.TrainConfig(corpus=cfg.corpus, seconds=max(cfg.seconds, 2.0), batch=cfg.batch,
                              seed=cfg.seed, holdout_synth=cfg.holdout_synth,
                              natural_share=cfg.natural_share)
    teacher = se.load_weights(cfg.init)
    npu.require_plain_mask(teacher.dims, f"--init {cfg.init!r}")  # before the corpus is read
    # --init is the float model to prune, not a warm start: OUT is this trainer's own.
    start = trainer.starting_point(files, None, fresh)
    ck = start.checkpoint
    if ck is not None and (ck["config"]["mlp_width"] != cfg.mlp_width
                           or ck["config"].get("log_ranges", 1) != cfg.log_ranges
                           # The init by file name: a checkout elsewhere must resume.
                           or Path(ck["config"]["init"]).name != Path(cfg.init).name):
        raise AvedgeError(f"checkpoint {files.checkpoint} is of another init/width/log form; "
                          f"use --fresh")
    student = tuned_start(start.weights, cfg, teacher) if start.kind == "weights" else None
    data = data or tx.CorpusData(data_cfg)
    torch.manual_seed(cfg.seed)
    if student is None:
        student = pruned(teacher, cfg.mlp_width)
    state = trainer.new_state()
    if ck is not None:
        student.load_state_dict(ck["student"])
        state = ck["state"]
        log(f"resuming from {files.checkpoint} at step {state['step']}")
    elif start.kind == "weights":
        state["warm_start"] = {"from": out.name, "steps": _record_of(files.record).get("steps")}
        log(f"starting from {out} (tuned {state['warm_start']['steps']} steps before)")
    phase = len(tx.CURRICULUM) - 1  # the hardest mixtures: the conditions it is scored on

    def unused_batch(k):  # training mixtures no step uses
        return fixed_length(tx.make_batch(data, data_cfg, phase, 10**8 + k * cfg.batch,
                                          np.random.default_rng([cfg.seed, 8, k])), cfg.samples)
    mix, _, enr = unused_batch(0)
    setup = Setup(cfg, student, (mix, enr))
    params = setup.qat.trainable()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if ck is not None:
        setup.qat.graph.load_state_dict(ck["qat"])
        opt.load_state_dict(ck["opt"])
    val = eval_batches(data.eval_set("val", cfg.eval_n, holdout_synth=None), cfg)
    if ck is None:  # the observers' first ranges
        with torch.no_grad():
            for k in range(4):
                mix, _, enr = unused_batch(k)
                setup.qat(mix, setup.film(enr))
    if not state["history"]:
        state["start_eval"] = {"teacher_float_si_sdri_db": evaluate_float(teacher, val),
                               **evaluate(setup, val)}
        log(f"start: {state['start_eval']}")

    def record() -> dict:
        rec = {"family": se.NAME, "weights": out.name, "init": cfg.init,
               "target": cfg.target, "scheme": setup.scheme,
               "dims": asdict(student.dims), "config": asdict(cfg),
               "params": {"extractor": sum(p.numel() for p in student.parameters())},
               "corpus": data.describe(), "steps": state["step"],
               "train_minutes": round(state["train_seconds"] / 60, 1),
               "sessions": state["sessions"], "machine": trainer.machine(),
               "skipped_steps": state.get("skipped", 0),
               "start_eval": state.get("start_eval"), "history": state["history"][-40:],
               **_npu_eval_of(files.record, state["step"])}
        if "warm_start" in state:
            rec["warm_start"] = state["warm_start"]
        return rec

    def step(k: int, batch) -> tuple[float, dict]:
        mix, tgt, enr = batch
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, k)
        loss = -aligned_loss(setup.qat(mix, setup.film(enr)), tgt).clamp(max=40.0).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        if torch.isfinite(loss) and torch.isfinite(gnorm):
            opt.step()
        else:  # one bad batch must not poison the weights (and the observers' ranges)
            state["skipped"] = state.get("skipped", 0) + 1
            log(f"step {k}: non-finite loss/gradient ({float(loss)}, {float(gnorm)}), "
                f"update skipped")
        return float(loss.detach()), {}

    def evaluate_now(k: int) -> dict:
        ev = evaluate(setup, val)
        log(f"step {k}: val {ev}")
        return {"val": ev}

    def save() -> None:
        trained = copy.deepcopy(setup).finish()
        trainer.save_run(
            files, {"student": trained.state_dict(), "qat": setup.qat.graph.state_dict(),
                    "opt": opt.state_dict(), "state": state, "config": asdict(cfg)},
            lambda path: se.save_weights(trained, path, meta={
                "steps": state["step"], "npu_target": cfg.target,
                "npu_log_ranges": cfg.log_ranges}),
            record())

    loader = BatchLoader(functools.partial(npu_batch, cfg, data_cfg, phase), data,
                         state["step"], workers=1)
    trainer.run_loop(state, trainer.LoopSettings(cfg.steps, cfg.minutes, cfg.checkpoint_minutes,
                                                 cfg.eval_every),
                     batches=loader, step=step, evaluate=evaluate_now, save=save,
                     progress=progress, log=log)
    log(f"saved {out} and {files.checkpoint} at step {state['step']}")
    return record()


def _record_of(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _npu_eval_of(rec_path: Path, step: int) -> dict:
    """The record's NPU-precision score (benchmarks/bench_arm.py, written beside the
    training figures) while it still describes these weights."""
    old = _record_of(rec_path).get("eval_npu")
    return {"eval_npu": old} if old and old.get("steps") == step else {}


@torch.no_grad()
def evaluate_float(model: se.Extractor, batches: list[tuple]) -> float:
    gains = []
    for mix, tgt, enr in batches:
        est = se.extract(model, mix, model.speaker_encoder(enr))
        gains.append(se.si_sdr(est, tgt) - se.si_sdr(mix, tgt))
    return round(float(torch.cat(gains).mean()), 3)


def final_eval(cfg: TrainConfig, n: int = 100, data=None) -> dict:
    """Eager fp32 scores of the tuned weights on the issue #4 sets (as the float trainer);
    the NPU-precision scores come from benchmarks/bench_arm.py."""
    return tx.final_eval(tx.TrainConfig(corpus=cfg.corpus, out=cfg.out,
                                        holdout_synth=cfg.holdout_synth), n=n, data=data)
