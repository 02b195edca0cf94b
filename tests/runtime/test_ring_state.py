"""RingState: the taps it hands out are the frames pushed `lag` calls ago, zeros before."""

import numpy as np
from avedge.runtime.ring_state import RingState


def test_taps_match_an_explicit_history():
    spec = {"input": "taps", "output": "frames", "taps": [[0, 1], [2, 5], [1, 3], [0, 5]]}
    ring = RingState(spec, frame_shape=(2, 3, 4), dtype=np.float32)
    rng = np.random.default_rng(0)
    pushed = []
    for call in range(12):
        taps = ring.taps()
        assert taps.shape == (2, 4, 4)
        for k, (row, lag) in enumerate(spec["taps"]):
            want = pushed[call - lag][:, row] if lag <= call else np.zeros((2, 4))
            np.testing.assert_array_equal(taps[:, k], want)
        frames = rng.standard_normal((2, 3, 4)).astype(np.float32)
        pushed.append(frames)
        ring.push(frames)


def test_reset_forgets_the_history():
    ring = RingState({"input": "t", "output": "f", "taps": [[0, 1]]}, (1, 1, 2), np.float32)
    ring.push(np.ones((1, 1, 2), np.float32))
    assert ring.taps().sum() == 2
    ring.reset()
    assert ring.taps().sum() == 0
