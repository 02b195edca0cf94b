"""Functions run in fresh forks of the clean helper process (models/corpus/fork_server.py)."""

import os
import random
import threading

import pytest
from avedge.models.corpus import fork_server as F


def test_each_call_starts_from_the_same_fresh_state():
    assert F.run_forked(pow, 2, 10) == 1024
    # The helper's random state is fixed once it has started; every child is a fork of it,
    # so each call draws the same number (in one process, two draws differ).
    assert F.run_forked(random.random) == F.run_forked(random.random)
    assert F.run_forked(os.getpid) != F.run_forked(os.getpid) != os.getpid()


def test_a_child_that_raises_or_dies_is_an_error_and_the_helper_goes_on():
    with pytest.raises(F.ForkedCallFailed, match="failed in its forked child"):
        F.run_forked(int, "not a number")
    with pytest.raises(F.ForkedCallFailed):
        F.run_forked(os._exit, 3)
    assert F.run_forked(print, "printed by the child goes to stderr") is None
    assert F.run_forked(max, 3, 7) == 7  # the prints did not corrupt the replies


def test_a_killed_helper_is_started_again():
    F.run_forked(abs, -1)
    F._server.kill()
    F._server.wait()
    assert F.run_forked(abs, -5) == 5


def test_calls_from_many_threads_each_get_their_own_answer():
    out = {}

    def call(k):
        out[k] = F.run_forked(pow, k, 2)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == {k: k * k for k in range(8)}
