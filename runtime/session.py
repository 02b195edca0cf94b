"""Session: one loaded graph on one backend. Numpy in, numpy out.

    >>> from avedge.runtime import load
    >>> sess = load("artifacts/tiny-stream-cpu")                 # doctest: +SKIP
    >>> print(sess.backend, [i["name"] for i in sess.inputs])     # doctest: +SKIP
    >>> out = sess.run(**{i["name"]: x for i, x in zip(sess.inputs, arrays)})  # doctest: +SKIP

A stateful (streaming) model is driven through `sess.stream()`; see runtime/stream.py.
The session holds no per-stream state, so one session can serve many streams.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from avedge.runtime.errors import InputError


def describe_specs(specs) -> str:
    return ", ".join(f"{s.name} {tuple(s.shape)} {s.dtype}" for s in specs)


class Session:
    """`spec` is the typed manifest (runtime/manifest.ModelManifest); `manifest`, `inputs`
    and `outputs` are its JSON form, for printing and for scripts written against it."""

    def __init__(self, path: Path, spec, backend, backend_name: str,
                 init_state: dict[str, np.ndarray]):
        self.path = Path(path)
        self.spec = spec
        manifest = spec.to_json()
        self.manifest = manifest
        self.backend = backend_name
        self._impl = backend
        self.init_state = init_state
        self.inputs: list[dict] = manifest["inputs"]
        self.outputs: list[dict] = manifest["outputs"]
        self._input_index = {s.name: i for i, s in enumerate(spec.inputs)}

    def __repr__(self) -> str:
        return (f"Session({str(self.path)!r}, backend={self.backend!r}, "
                f"family={self.spec.family!r}, recipe={self.spec.recipe!r})")

    def run(self, **inputs) -> dict[str, np.ndarray]:
        """Run the graph once. Every input is required, by name, with the manifest's
        exact shape and dtype; anything else is refused with what was expected."""
        expected = describe_specs(self.spec.inputs)
        unknown = sorted(set(inputs) - set(self._input_index))
        missing = [s.name for s in self.spec.inputs if s.name not in inputs]
        if unknown or missing:
            parts = ([f"unknown input(s) {unknown}"] if unknown else []) + (
                [f"missing input(s) {missing}"] if missing else [])
            raise InputError(f"{'; '.join(parts)}; the artifact expects: {expected}")
        arrays = [check_array(s, inputs[s.name]) for s in self.spec.inputs]
        return dict(zip((s.name for s in self.spec.outputs), self.run_ordered(arrays)))

    def run_ordered(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs already checked, in manifest order (the hot path of a Stream)."""
        return self._impl.run(arrays)

    def stream(self, conditions: dict | None = None):
        from avedge.runtime.stream import Stream

        return Stream(self, conditions)


def check_array(spec, value) -> np.ndarray:
    """`value` as an array of exactly the TensorSpec's shape and dtype, else InputError."""
    arr = np.asarray(value)
    want_shape, want_dtype = tuple(spec.shape), np.dtype(spec.dtype)
    if arr.dtype != want_dtype:
        raise InputError(f"input {spec.name!r} has dtype {arr.dtype}; the artifact expects "
                         f"{want_dtype} of shape {want_shape}")
    if arr.shape != want_shape:
        raise InputError(f"input {spec.name!r} has shape {arr.shape}; the artifact expects "
                         f"{want_shape} ({want_dtype})")
    return arr


def load_init_state(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
