"""load(dir) -> Session (one graph) or Pipeline (a composite artifact).

Every file the manifest lists is checked (size, sha256) before any native runtime
sees it; the backend is the first of the artifact's target backends that is
available here, or the one asked for.
"""

from __future__ import annotations

from pathlib import Path

from avedge.runtime.backends import (
    BACKEND_NAMES,
    available_backends,
    backend_class,
    require_backend,
)
from avedge.runtime.errors import ArtifactError, BackendUnavailableError
from avedge.runtime.manifest import read_manifest, read_verified, verify_all
from avedge.runtime.pipeline import Pipeline
from avedge.runtime.session import Session, load_init_state

INIT_STATE_FILE = "init_state.npz"


def load(path: str | Path, backend: str | None = None, threads: int | None = None):
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("kind") == "pipeline":
        return _load_pipeline(path, manifest, backend, threads)
    return _load_session(path, manifest, backend, threads)


def _load_pipeline(path: Path, manifest: dict, backend, threads) -> Pipeline:
    verify_all(path, manifest)  # the component manifests' hashes are listed here
    sessions = {}
    for name, comp in manifest["components"].items():
        sessions[name] = _load_session(path / comp["dir"], read_manifest(path / comp["dir"]),
                                       backend, threads)
    return Pipeline(path, manifest, sessions)


def servable_backends(manifest: dict) -> list[str]:
    """Every backend that can run one of the artifact's files, target's choice first."""
    formats = {rec["format"] for rec in manifest.get("files", {}).values()}
    ordered = list(manifest.get("backends", [])) + [b for b in BACKEND_NAMES
                                                    if b not in manifest.get("backends", [])]
    return [b for b in ordered if backend_class(b).format in formats]


def choose_backend(manifest: dict, backend: str | None) -> str:
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
    for name in manifest.get("backends", []):
        if name in servable and backend_class(name).unavailable_reason() is None:
            return name
    here = available_backends()
    why = "; ".join(f"{n}: {backend_class(n).unavailable_reason()}"
                    for n in manifest.get("backends", []) if n in servable)
    raise BackendUnavailableError(
        f"none of this artifact's target backends ({', '.join(manifest.get('backends', []))}) "
        f"can run here ({why}); backends available here that can serve its files: "
        f"{', '.join(b for b in servable if b in here) or '(none)'}; available here: "
        f"{', '.join(here) or '(none)'}; pass backend=... / --backend"
    )


def _load_session(path: Path, manifest: dict, backend, threads) -> Session:
    if manifest.get("kind", "model") != "model":
        raise ArtifactError(f"{path}: unknown artifact kind {manifest.get('kind')!r}")
    name = choose_backend(manifest, backend)
    cls = backend_class(name)
    model_file = next(f for f, rec in manifest["files"].items() if rec["format"] == cls.format)
    # Files this backend does not read are still checked: a damaged artifact is refused whole.
    verify_all(path, manifest, skip={model_file, INIT_STATE_FILE})
    model_bytes = read_verified(path, model_file, manifest)
    init_state = {}
    if INIT_STATE_FILE in manifest["files"]:
        init_state = load_init_state(read_verified(path, INIT_STATE_FILE, manifest))
    impl = cls(model_bytes, manifest, threads if threads is not None else manifest.get("threads"))
    return Session(path, manifest, impl, name, init_state)
