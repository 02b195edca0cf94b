"""Files that are either whole or absent: never half-written, even if the process dies.

    >>> from avedge.runtime.fsutil import atomic_write_json, staged_dir
    >>> atomic_write_json("out/report.json", {"ok": True})          # doctest: +SKIP
    >>> with staged_dir("artifacts/tiny-cpu") as tmp:                 # doctest: +SKIP
    ...     (tmp / "model.onnx").write_bytes(blob)    # renamed into place on success

A single file is written to a hidden temporary sibling, flushed to disk, then renamed
over the target (a rename within one folder is atomic on POSIX). A folder is built in a
hidden sibling and swapped in with two renames; a failure removes the sibling and leaves
any previous folder untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from avedge.runtime.errors import AvedgeError


def _default_mode() -> int:
    """What open() would give a new file: 0666 less the process's umask (read from /proc
    where it can be: setting the umask to read it races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600; a written file is for others too
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = None):
    """Yield a temporary sibling path with the same suffix for a library that writes by
    path (soundfile, numpy, safetensors, torch.save); on success it is renamed over
    `path` (and given `mode`), on failure removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


@contextlib.contextmanager
def staged_dir(out_dir: str | Path, marker: str = "manifest.json"):
    """Yield a hidden sibling directory; on success it replaces `out_dir` in one rename.

    `out_dir` may already exist only as a previous result (it holds `marker`) or empty:
    anything else is someone's folder and is refused rather than replaced.
    """
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and ((out / marker).exists()
                                               or not any(out.iterdir()))):
        raise AvedgeError(f"{out} exists and is not an avedge artifact (no {marker}); choose "
                          f"another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def build_lock(path: str | Path):
    """Hold an exclusive lock named after `path` (a `.lock` sibling) while building it.

    Caches shared between processes (two `avedge extract` runs, parallel test workers)
    check for the result, build it and publish it under this lock, so a second process
    waits and then reuses the first one's result instead of swapping a folder out from
    under a reader or doing the same minutes of work again.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p.with_name(f".{p.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
