"""The training loop every family trainer shares; a trainer brings its model, data, loss
and evaluation.

    files = RunFiles.beside(cfg.out)             # OUT, OUT.json (record), OUT.ckpt.pt
    start = starting_point(files, cfg.init, fresh, device)   # resume / warm start / scratch
    state = start.checkpoint["state"] if start.checkpoint else new_state()
    run_loop(state, LoopSettings(...), batches=loader, step=one_step, evaluate=score,
             save=write_all)                     # signals, time budget, bar, checkpoints

Where a run starts (`starting_point`): its own checkpoint beside OUT resumes it (same
machine: optimizer checkpoints are not in the repository); else it warm-starts from
trained weights: `--init` when given, else OUT itself when it exists (so a fresh clone,
or a GPU machine that got only the working tree, continues from the shipped weights);
else from scratch. `--fresh` ignores the checkpoint and OUT, not `--init`.

The loop stops at the schedule's end, on SIGTERM / Ctrl-C, or when the time budget
(`--minutes`) is spent, and always saves before returning; it also saves every
`checkpoint_minutes`. Everything it writes is written atomically (temporary sibling,
then a rename), so a killed run leaves the last complete files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_path, atomic_write_json

PRECISIONS = ("fp32", "bf16")  # of the training step; evaluation and export stay fp32


@dataclass(frozen=True)
class RunFiles:
    weights: Path  # what the run ships (OUT)
    record: Path  # how it was made (OUT with .json)
    checkpoint: Path  # the full training state, to resume on this machine (OUT.ckpt.pt)

    @classmethod
    def beside(cls, out: str | Path) -> RunFiles:
        out = Path(out)
        return cls(out, out.with_suffix(".json"), out.with_suffix(".ckpt.pt"))


def new_state() -> dict:
    """The counters a run keeps in its checkpoint (a trainer may add its own keys)."""
    return {"step": 0, "samples": 0, "train_seconds": 0.0, "history": [], "sessions": 0}


# ----------------------------------------------------------------------------- start

@dataclass(frozen=True)
class Start:
    kind: str  # "checkpoint" (resume), "weights" (warm start) or "scratch"
    checkpoint: dict | None = None
    weights: Path | None = None


def starting_point(files: RunFiles, init: str | None, fresh: bool,
                   device: str | torch.device = "cpu") -> Start:
    """Resume from the checkpoint beside OUT, else warm-start from --init or OUT, else
    start from scratch (see the module docstring)."""
    if files.checkpoint.exists() and not fresh:
        return Start("checkpoint", checkpoint=load_checkpoint(files.checkpoint, device))
    if init:
        path = Path(init)
        if not path.is_file():
            raise AvedgeError(f"--init {init!r} does not exist (want trained .safetensors "
                              f"weights or a .ckpt.pt checkpoint)")
        return Start("weights", weights=path)
    if files.weights.is_file() and not fresh:
        return Start("weights", weights=files.weights)
    return Start("scratch")


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, weights_only=False, map_location=torch.device(device))
    except Exception as exc:  # a truncated or foreign file: say which, and the way out
        raise AvedgeError(f"cannot read checkpoint {str(path)!r} ({exc}); remove it or "
                          f"pass --fresh") from exc


# ----------------------------------------------------------------------------- writes

def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary sibling, then rename: a killed run keeps the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_run(files: RunFiles, checkpoint: dict, write_weights: Callable[[Path], None],
             record: dict) -> None:
    """Checkpoint, weights, record, in that order: the shipped files always match the
    last checkpoint (the weights writer must itself be atomic)."""
    atomic_torch_save(checkpoint, files.checkpoint)
    write_weights(files.weights)
    atomic_write_json(files.record, record, indent=1)


def optimizer_step(loss: torch.Tensor, opt, params, clip: float, average=None,
                   model=None, step: int = 0) -> float:
    """One update: backward, gradient-norm clipping to `clip`, the optimizer's step, then
    the weight average (`average.update(model, step)`) when there is one. -> the gradient
    norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    opt.step()
    if average is not None:
        average.update(model, step)
    return gnorm


def save_averaged_run(files: RunFiles, model, average, opt, state: dict, config: dict,
                      save_weights: Callable, record: dict, **parts) -> None:
    """save_run for a trainer with an optional weight average: the checkpoint holds the
    trained model, `parts` (more modules, by name), the average and the optimizer; the
    weights written are the average's when there is one. save_weights(module, path,
    meta=...) is the family's writer."""
    shipped = average.model if average else model
    save_run(files, {"model": model.state_dict(),
                     **{name: m.state_dict() for name, m in parts.items()},
                     "ema": average.state_dict() if average else None,
                     "opt": opt.state_dict(), "state": state, "config": config},
             lambda path: save_weights(shipped, path, meta={"steps": state["step"]}), record)


# ----------------------------------------------------------------------------- options

def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise AvedgeError(f"--precision {precision!r} is not one training runs in; "
                          f"accepted: {', '.join(PRECISIONS)}")


def check_device(name: str) -> torch.device:
    """The torch device, or a clear error before the corpus is read."""
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise AvedgeError(f"--device {name!r} is not a torch device ({exc}); use cpu or "
                          f"cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AvedgeError(f"--device {name!r}: this machine has no CUDA GPU (torch "
                          f"{torch.__version__}); use cpu")
    return dev


def autocast(device: torch.device, precision: str):
    """bf16: forward and backward under bfloat16 autocast (weights, optimizer and loss
    stay fp32); fp32: a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def machine() -> dict:
    import platform

    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "torch": torch.__version__}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


# ----------------------------------------------------------------------------- loop

@dataclass(frozen=True)
class LoopSettings:
    steps: int  # the schedule's end
    minutes: float | None  # wall budget of this invocation (None: none)
    checkpoint_minutes: float
    eval_every: int


class StopRequest(contextlib.AbstractContextManager):
    """SIGTERM / SIGINT set `requested` (the loop finishes its step and saves) instead of
    killing the run; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def __enter__(self):
        self._old = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}
        return self

    def _on_signal(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar, or None when not asked for or tqdm is absent (a bare GPU machine):
    training does not depend on it."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def run_loop(state: dict, loop: LoopSettings, *, batches, step: Callable[[int, Any], tuple],
             evaluate: Callable[[int], dict | None], save: Callable[[], None],
             after_checkpoint: Callable[[], None] | None = None, progress: bool = True,
             log=print) -> None:
    """Train from state["step"] to loop.steps.

    batches.next() -> the next step's batch (batches.close() at the end);
    step(step, batch) -> (loss float, progress-bar fields) runs one optimizer step;
    evaluate(step) -> a history entry ({"val": ...}) or None, every eval_every steps and
    at the schedule's end; save() writes checkpoint, weights and record.
    Updates state: step, train_seconds (step time only, not waits for batches),
    loss_ema, history, sessions.
    """
    state["sessions"] = state.get("sessions", 0) + 1
    bar = progress_bar(loop.steps, state["step"], progress)
    t_session = t_ckpt = time.time()
    try:
        with StopRequest() as stop:
            while state["step"] < loop.steps and not stop.requested:
                if loop.minutes is not None and time.time() - t_session > loop.minutes * 60:
                    log(f"time budget of {loop.minutes} min reached")
                    break
                k = state["step"]
                batch = batches.next()
                t0 = time.time()
                loss, fields = step(k, batch)
                state["step"] = k + 1
                state["train_seconds"] += time.time() - t0
                state["loss_ema"] = 0.98 * state.get("loss_ema", loss) + 0.02 * loss
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{state['loss_ema']:.2f}", **fields)
                if state["step"] % loop.eval_every == 0 or state["step"] == loop.steps:
                    entry = evaluate(state["step"])
                    if entry is not None:
                        state["history"].append({
                            "step": state["step"], "loss_ema": round(state["loss_ema"], 3),
                            **entry, "minutes": round(state["train_seconds"] / 60, 1)})
                if time.time() - t_ckpt > loop.checkpoint_minutes * 60:
                    save()
                    t_ckpt = time.time()
                    if after_checkpoint:
                        after_checkpoint()
    finally:
        batches.close()
        if bar:
            bar.close()
    save()
