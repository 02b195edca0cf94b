"""load(dir) -> Session (one graph) or Pipeline (a composite artifact).

The manifest is validated (runtime/manifest.py) and every listed path checked to stay
inside the folder before any native runtime sees a byte; then only the files the chosen
backend reads (its model file, the initial state) are read, size- and sha256-checked,
and handed over as the verified bytes. Other formats' files (e.g. a 7 MB .pte when
onnxruntime runs the .onnx) are not hashed: `avedge info` checks an artifact whole. The
backend is the first of the artifact's target backends that is available here, or the
one asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from avedge.runtime.backends import (
    BACKEND_NAMES,
    available_backends,
    backend_class,
    require_backend,
)
from avedge.runtime.errors import ArtifactError, BackendUnavailableError
from avedge.runtime.manifest import (
    MANIFEST_NAME,
    ModelManifest,
    PipelineManifest,
    open_manifest,
    read_verified,
)
from avedge.runtime.pipeline import Pipeline
from avedge.runtime.session import Session, load_init_state

INIT_STATE_FILE = "init_state.npz"


def load(path: str | Path, backend: str | None = None, threads: int | None = None):
    path = Path(path)
    manifest = open_manifest(path)
    if isinstance(manifest, PipelineManifest):
        return _load_pipeline(path, manifest, backend, threads)
    return _load_session(path, manifest, backend, threads)


def component_manifests(path: Path, manifest: PipelineManifest) -> dict[str, ModelManifest]:
    """Each component's manifest, checked against the hash the pipeline lists for it."""
    out = {}
    for name, comp in manifest.components.items():
        read_verified(path, f"{comp.dir}/{MANIFEST_NAME}", manifest)
        sub = open_manifest(path / comp.dir)
        if not isinstance(sub, ModelManifest):
            raise ArtifactError(f"{path / comp.dir}: a pipeline component must be of kind "
                                f"'model', not {sub.kind!r}")
        out[name] = sub
    return out


def _load_pipeline(path: Path, manifest: PipelineManifest, backend, threads) -> Pipeline:
    subs = component_manifests(path, manifest)
    sessions = {name: _load_session(path / manifest.components[name].dir, sub, backend, threads)
                for name, sub in subs.items()}
    return Pipeline(path, manifest, sessions)


def servable_backends(manifest: ModelManifest) -> list[str]:
    """Every backend that can run one of the artifact's files, target's choice first."""
    formats = {rec.format for rec in manifest.files.values()}
    ordered = list(manifest.backends) + [b for b in BACKEND_NAMES if b not in manifest.backends]
    return [b for b in ordered if backend_class(b).format in formats]


def choose_backend(manifest: ModelManifest, backend: str | None) -> str:
    servable = servable_backends(manifest)
    if backend is not None:
        backend_class(backend)  # unknown name -> error listing all backends
        if backend not in servable:
            raise ArtifactError(
                f"this artifact has no .{backend_class(backend).format} file for backend "
                f"{backend!r}; backends that can run it: {', '.join(servable) or '(none)'}")
        require_backend(backend)
        return backend
    # Probe availability lazily, in priority order: probing torch-cuda imports torch,
    # which an onnxruntime-only device must never pay for.
    for name in manifest.backends:
        if name in servable and backend_class(name).unavailable_reason() is None:
            return name
    here = available_backends()
    why = "; ".join(f"{n}: {backend_class(n).unavailable_reason()}"
                    for n in manifest.backends if n in servable)
    raise BackendUnavailableError(
        f"none of this artifact's target backends ({', '.join(manifest.backends)}) "
        f"can run here ({why}); backends available here that can serve its files: "
        f"{', '.join(b for b in servable if b in here) or '(none)'}; available here: "
        f"{', '.join(here) or '(none)'}; pass backend=... / --backend"
    )


def _load_session(path: Path, manifest: ModelManifest, backend, threads) -> Session:
    name = choose_backend(manifest, backend)
    cls = backend_class(name)
    model_file = next(f for f, rec in manifest.files.items() if rec.format == cls.format)
    init_state = {}
    if INIT_STATE_FILE in manifest.files:
        init_state = load_init_state(read_verified(path, INIT_STATE_FILE, manifest))
    _check_init_state(path, manifest, init_state)
    model_bytes = read_verified(path, model_file, manifest)
    impl = cls(model_bytes, manifest,
               threads if threads is not None else manifest.threads)
    return Session(path, manifest, impl, name, init_state)


def _check_init_state(path: Path, manifest: ModelManifest, init_state: dict) -> None:
    """Every state input has an initial value of its shape and dtype (a stream starts there)."""
    if manifest.stream is None:
        return
    names = [p.input for p in manifest.stream.state] + [r.input for r in manifest.stream.rings]
    for name in names:
        spec = manifest.input(name)
        got = init_state.get(name)
        if got is None or got.shape != tuple(spec.shape) or got.dtype != np.dtype(spec.dtype):
            have = "missing" if got is None else f"{got.shape} {got.dtype}"
            raise ArtifactError(f"{path / INIT_STATE_FILE}: initial state {name!r} is {have}; "
                                f"the manifest declares {tuple(spec.shape)} {spec.dtype}: "
                                f"re-export the artifact")
