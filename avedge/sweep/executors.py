"""Where trials run. An executor maps trial specs to results:

    executor.map(specs: list[dict]) -> Iterator[tuple[dict, dict]]

yielding (spec, result) as each trial finishes, in any order, each trial in a fresh
process (so its peak RSS is its own). Closing the iterator early (the sweep is
interrupted) stops the trials still running. `LocalExecutor` runs processes on this
machine; with an address, `make_executor` returns `avedge.sweep.ray_executor.RayExecutor`,
which runs `trial.run_trial` on a Ray cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json
from avedge.sweep.trial import RESULT


class Executor(Protocol):
    def map(self, specs: list[dict]) -> Iterator[tuple[dict, dict]]: ...


def make_executor(ray_address: str | None, workers: int = 1) -> Executor:
    """Local processes (`workers` at a time), or the Ray cluster at `ray_address`."""
    if not isinstance(workers, int) or workers < 1:
        raise AvedgeError(f"--workers must be an integer >= 1, got {workers!r}")
    if ray_address is None:
        return LocalExecutor(workers)
    from avedge.sweep.ray_executor import RayExecutor  # imports ray itself, naming the extra

    return RayExecutor(ray_address)


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the sweep process dies (even by SIGKILL),
    so a restarted sweep never races an orphaned trial writing the same folder."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the interrupt handler still stops them
        pass


def _child_env() -> dict:
    """The parent's environment, with its import path: a user's `module:factory` or
    `--metric` importable in the sweep is importable in the trial."""
    prefixes = {sys.prefix, sys.base_prefix}
    own = [p for p in sys.path if p and Path(p).is_dir()
           and not any(p.startswith(pre) for pre in prefixes)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(own + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class LocalExecutor:
    """Each trial is `python -m avedge.sweep.trial SPEC.json` in a fresh process, `workers`
    at a time; its output goes to out_dir/trial.log. One worker (the default) keeps
    trials from disturbing each other's timings."""

    POLL_S = 0.05

    def __init__(self, workers: int = 1):
        self.workers = workers

    def map(self, specs: list[dict]) -> Iterator[tuple[dict, dict]]:
        pending = list(specs)
        running: dict[subprocess.Popen, tuple[dict, float]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    spec = pending.pop(0)
                    running[self._start(spec)] = (spec, time.monotonic())
                for proc in [p for p in running if p.poll() is not None]:
                    spec, started = running.pop(proc)
                    yield spec, self._collect(proc, spec, time.monotonic() - started)
                if running:
                    time.sleep(self.POLL_S)
        finally:  # interrupted (or the caller stopped early): no trial outlives the sweep
            for proc in running:
                proc.kill()
            for proc in running:
                proc.wait()

    def _start(self, spec: dict) -> subprocess.Popen:
        out = Path(spec["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "spec.json", spec)
        with open(out / "trial.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "avedge.sweep.trial", str(out / "spec.json")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_child_env(), preexec_fn=_die_with_parent)  # noqa: PLW1509 - one thread

    @staticmethod
    def _collect(proc: subprocess.Popen, spec: dict, seconds: float) -> dict:
        out = Path(spec["out_dir"])
        try:
            result = json.loads((out / RESULT).read_text())
        except (OSError, ValueError):
            # The process died before writing a result (a crash in a native library, the
            # kernel's OOM killer): record how, with the last line it printed.
            code = proc.returncode
            how = (f"killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with code {code}")
            result = {k: spec.get(k) for k in ("trial_id", "model", "recipe", "target",
                                               "backend")}
            result.update(status="failed", error=f"trial process {how} without a result; "
                                                 f"last output: {_last_line(out / 'trial.log')}")
        result["process_s"] = round(seconds, 3)
        return result


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(nothing)"
