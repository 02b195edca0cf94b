"""The caller's half of a ring-buffer state (a manifest stream section's `rings`).

A model with dilated causal convolutions needs, per call, only a few old frames of
each layer's input (t - d, t - 2d, ...), not the whole window. Carrying the window as
ordinary state makes the graph copy and shift all of it every chunk; with a ring the
graph outputs this call's frames (B, N, ...) and takes the taps it needs (B, K, ...),
and the caller keeps the history: here a numpy circular buffer, on a microcontroller a
pointer bump. Tap k is row `taps[k][0]` of the frames output `taps[k][1]` calls ago,
zeros before the stream began.

    >>> import numpy as np
    >>> ring = RingState({"input": "taps", "output": "frames", "taps": [[0, 1], [1, 2]]},
    ...                  frame_shape=(1, 2, 3), dtype=np.float32)
    >>> ring.push(np.ones((1, 2, 3), np.float32))
    >>> ring.taps()[0, :, 0].tolist()    # row 0 one call ago; row 1 two calls ago (zeros)
    [1.0, 0.0]
"""

from __future__ import annotations

import numpy as np


class RingState:
    def __init__(self, spec: dict, frame_shape: tuple, dtype):
        self.input, self.output = spec["input"], spec["output"]
        taps = np.asarray(spec["taps"], np.int64).reshape(-1, 2)
        self._rows, self._lags = taps[:, 0], taps[:, 1]
        self.depth = int(self._lags.max()) if len(taps) else 1
        # history[slot] holds the frames of one call; slot of call c = c % depth.
        b, n, *rest = frame_shape
        self._history = np.zeros((self.depth, b, n, *rest), dtype)
        self._calls = 0

    def reset(self) -> None:
        self._history[:] = 0
        self._calls = 0

    def taps(self) -> np.ndarray:
        """(B, K, ...) inputs for the next call."""
        slots = (self._calls - self._lags) % self.depth
        got = self._history[slots, :, self._rows]  # (K, B, ...)
        got[self._lags > self._calls] = 0  # before the stream began
        return np.ascontiguousarray(np.moveaxis(got, 0, 1))

    def push(self, frames: np.ndarray) -> None:
        """Record the frames output by the call just made."""
        self._history[self._calls % self.depth] = frames
        self._calls += 1
