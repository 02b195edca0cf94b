"""Run a function in a fresh fork of a clean, single-threaded helper process.

    >>> from avedge.models.corpus.fork_server import run_forked
    >>> run_forked(pow, 2, 10)                                          # doctest: +SKIP
    1024

Why: some native libraries keep hidden state between calls (libespeak-ng: pitch flutter,
wave phase, libc rand()), so only the first call of a fresh process is reproducible. A
fork per call gives that, but forking the caller itself is unsafe once it has other
threads (a test worker's I/O thread, a runtime's thread pool): the child gets a copy of
every lock some other thread held at that moment, and waits on it for ever. So the forks
come from a helper started once per process (`python -m avedge.models.corpus.fork_server`):
it has one thread, imports what the functions need once, and forks one child per call.
multiprocessing's "forkserver" does the same but re-imports the caller's main script in
every child, which breaks plain scripts without an `if __name__ == "__main__"` guard.

Protocol (pipes): the caller writes a length-prefixed pickle of (fn, args); the helper
unpickles it (importing fn's module in the helper, once), forks, the child writes the
pickled result into a pipe and exits, and the helper relays it, length-prefixed, empty
when the child died. EOF on its input ends the helper.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading

_HEADER = struct.Struct("<Q")
_lock = threading.Lock()
_server: subprocess.Popen | None = None


class ForkedCallFailed(RuntimeError):
    """The forked child died (or raised) before returning a result."""


def run_forked(fn, *args):
    """fn(*args) in a fresh fork of the helper; its result (picklable both ways)."""
    request = pickle.dumps((fn, args))
    with _lock:  # one call at a time per helper: its pipe carries one exchange
        for attempt in (0, 1):  # a helper that died (killed, OOM) is started again once
            server = _ensure_server()
            try:
                _write(server.stdin, request)
                reply = _read(server.stdout)
                break
            except (BrokenPipeError, EOFError):
                _stop_server()
                if attempt:
                    raise ForkedCallFailed("the fork helper process died") from None
    if not reply:
        raise ForkedCallFailed(f"{getattr(fn, '__name__', fn)} failed in its forked child")
    return pickle.loads(reply)


def _ensure_server() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
    return _server


def _stop_server() -> None:
    global _server
    if _server is not None:
        _server.kill()
        _server.wait()
        _server = None


def _write(stream, data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream) -> bytes:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    n = _HEADER.unpack(head)[0]
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return data


def _serve(inp, out) -> None:
    """The helper's loop: one request, one fork, one reply."""
    while True:
        try:
            fn, args = pickle.loads(_read(inp))
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: compute, write, exit without running any cleanup
            try:
                os.close(r)
                with os.fdopen(w, "wb") as f:
                    f.write(pickle.dumps(fn(*args)))
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            result = f.read()
        os.waitpid(pid, 0)
        _write(out, result)


if __name__ == "__main__":
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so whatever a
    # function or a native library prints cannot corrupt a reply.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, protocol)
