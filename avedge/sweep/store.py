"""A sweep's output folder: the lock, the settings it was run with, one folder per trial.

    DIR/.sweep.lock              fcntl.flock held for the sweep's life (holds its pid)
    DIR/sweep.json               the settings trials were measured with (resume checks them)
    DIR/trials/<id>/result.json  a finished trial (never run again), beside its artifact/
    DIR/results.{csv,json}, pareto.png, report.html

Every file is written atomically (runtime/fsutil), so a sweep killed at any moment
leaves whole files or none, and a restart picks up from the finished trials.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json
from avedge.sweep.trial import RESULT

LOCK = ".sweep.lock"
SETTINGS = "sweep.json"


class SweepFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.trials_dir = self.root / "trials"

    @contextlib.contextmanager
    def locked(self):
        """Create the folder and hold its lock; a second sweep on it is refused, naming
        the folder and the pid of the sweep that holds it. The lock dies with the process
        (even on SIGKILL), so a killed sweep never blocks its restart."""
        if self.root.exists() and not self.root.is_dir():
            raise AvedgeError(f"--out {self.root} is a file; give a folder")
        if (self.root.is_dir() and any(self.root.iterdir())
                and not (self.root / SETTINGS).exists() and not (self.root / LOCK).exists()):
            raise AvedgeError(f"--out {self.root} holds other files and no sweep; choose an empty "
                              f"or new folder (or the folder of an earlier sweep to resume it)")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise AvedgeError(f"another sweep (pid {holder}) is writing {self.root}; wait for "
                                  f"it to finish or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the lock; the file stays (removing it would race)

    def use_settings(self, settings: dict, described: dict) -> None:
        """Refuse to resume a folder measured with other settings (its finished trials
        would not compare); else record these (`described`: what else to keep)."""
        path = self.root / SETTINGS
        if path.exists():
            old = json.loads(path.read_text()).get("settings", {})
            diff = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
            if diff:
                what = ", ".join(f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now"
                                 for k in diff)
                raise AvedgeError(f"{self.root} holds a sweep run with other settings ({what}); "
                                  f"resume it with the same ones or choose another --out")
        atomic_write_json(path, {"settings": settings, **described})

    def trial_dir(self, spec: dict) -> Path:
        return Path(spec["out_dir"])

    def result(self, spec: dict) -> dict | None:
        """The finished trial's result, or None (never run, or killed before the end)."""
        path = self.trial_dir(spec) / RESULT
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def forget(self, spec: dict) -> None:
        """Make a finished trial unfinished (it is run again)."""
        (self.trial_dir(spec) / RESULT).unlink(missing_ok=True)

    def record(self, spec: dict, result: dict) -> None:
        """Keep a result the trial could not write itself (it ran on another host, or its
        process died before the end)."""
        path = self.trial_dir(spec) / RESULT
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, result)
