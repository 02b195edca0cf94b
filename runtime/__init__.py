"""avedge.runtime: load an artifact, run it. numpy in, numpy out; torch only where a
backend needs it. Never imports avedge.models or avedge.quantize.

    >>> from avedge.runtime import load
    >>> sess = load("demo-out/tiny-stream-cpu", backend="onnxruntime")    # doctest: +SKIP
    >>> stream = sess.stream()                                            # doctest: +SKIP
"""

from avedge.runtime.backends import available_backends
from avedge.runtime.errors import (
    ArtifactError,
    AvedgeError,
    BackendUnavailableError,
    InputError,
    UnknownNameError,
)
from avedge.runtime.loader import load
from avedge.runtime.manifest import read_manifest
from avedge.runtime.pipeline import Pipeline
from avedge.runtime.session import Session
from avedge.runtime.stream import Stream

__all__ = [
    "ArtifactError",
    "AvedgeError",
    "BackendUnavailableError",
    "InputError",
    "Pipeline",
    "Session",
    "Stream",
    "UnknownNameError",
    "available_backends",
    "load",
    "read_manifest",
]
