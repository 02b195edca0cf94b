"""Training batches made ahead of the loop, in a thread or in worker processes.

    loader = BatchLoader(make, data, first_step, workers=4)
    batch = loader.next()      # make(data, first_step), then first_step + 1, ...
    loader.close()

`make(data, step)` must be a pure function of the step (the extractor's mixtures are), so
the batches do not depend on how many workers drew them. One worker is a background
thread sharing `data`: enough on a 2-core machine, where the model takes the cores. More
are processes (spawned: the parent holds torch's thread pools, which do not survive a
fork), each with its own copy of `data`, pickled once at start; a GPU step is far
shorter than the ~0.17 s of one core that 8 mixtures cost to draw (measured).
"""

from __future__ import annotations

import collections
import functools
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

_WORKER_DATA: Any = None


def _init_worker(data: Any) -> None:
    global _WORKER_DATA
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    torch.set_num_threads(1)
    _WORKER_DATA = data


def _make_in_worker(make: Callable[[Any, int], Any], step: int) -> Any:
    return make(_WORKER_DATA, step)


def check_workers(workers: int) -> None:
    """Refuse a worker count that cannot draw batches, saying what is accepted."""
    if workers < 1:
        from avedge.runtime.errors import AvedgeError

        raise AvedgeError(f"--workers must be >= 1 (1: a background thread, N: N "
                          f"processes); got {workers}")


class BatchLoader:
    def __init__(self, make: Callable[[Any, int], Any], data: Any, first_step: int,
                 workers: int = 1):
        check_workers(workers)
        if workers == 1:  # the thread shares `data`; processes hold their own copy
            self.pool = ThreadPoolExecutor(1)
            self._call = functools.partial(make, data)
        else:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "spawn"), initializer=_init_worker, initargs=(data,))
            self._call = functools.partial(_make_in_worker, make)
        self.pending: collections.deque[Future] = collections.deque()
        self.next_step = first_step
        for _ in range(workers):  # one batch ahead per worker
            self._submit()

    def _submit(self) -> None:
        self.pending.append(self.pool.submit(self._call, self.next_step))
        self.next_step += 1

    def next(self) -> Any:
        batch = self.pending.popleft().result()
        self._submit()
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
