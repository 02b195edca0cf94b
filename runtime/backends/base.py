"""What every backend provides. A backend runs one graph file; it holds no stream state."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    name: str = ""
    format: str = ""  # "pte" | "onnx" | "pt2"

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None if this backend can run here, else why not (missing package, no GPU)."""

    @abstractmethod
    def __init__(self, model_bytes: bytes, manifest, threads: int | None):
        """Load the verified model bytes into the native runtime; `manifest` is the
        validated ModelManifest (runtime/manifest.py)."""

    @abstractmethod
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs and outputs in manifest order."""
