"""Capture what native libraries write to file descriptor 2 while they load.

ExecuTorch's C++ runtime logs CPU probing lines to stderr on every load; they are
noise to a user unless the load fails, in which case they carry the reason. So the
text is kept, and attached to the error only when there is one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_stderr():
    """Yields a list that, after the block, holds the captured text (one string)."""
    box: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))
