"""Capture what a library prints — through Python's sys.stdout/stderr and straight to
the file descriptor from native code — while it loads or compiles.

ExecuTorch's C++ runtime logs CPU probing lines to stderr on every load, Vela prints
its report to stdout, the TOSA reference model prints notices: noise to a user unless
the call fails, in which case they carry the reason. So the text is kept, and attached
to the error only when there is one.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile

_STREAMS = {1: ("stdout", contextlib.redirect_stdout), 2: ("stderr", contextlib.redirect_stderr)}


@contextlib.contextmanager
def captured_output(fd: int):
    """fd 1 or 2. Yields a list that, after the block, holds the captured text."""
    name, redirect = _STREAMS[fd]
    box: list[str] = []
    getattr(sys, name).flush()
    saved = os.dup(fd)
    text = io.StringIO()  # Python-level prints, wherever sys.stdout/stderr points
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)  # prints from native code
        try:
            with redirect(text):
                yield box
        finally:
            getattr(sys, name).flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            box.append(text.getvalue() + tmp.read().decode(errors="replace"))


def captured_stderr():
    return captured_output(2)


def captured_stdout():
    return captured_output(1)
