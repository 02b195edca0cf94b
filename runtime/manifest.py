"""manifest.json: what an artifact directory holds, and the check that it is intact.

The manifest is plain JSON so that a device with only numpy + a native runtime can
read it. Keys (format version 1):
    format_version, kind ("model" | "pipeline"), family, target, backends, recipe,
    files: {name: {sha256, bytes, format}}, inputs/outputs: [{name, shape, dtype}],
    stream: null | {input, output, time_axis, chunk_samples, lookahead_samples,
                    sample_rate, state: [{input, output}], conditions: [names]},
    parity: {format: {backend, max_abs_err, rel_err}}, budgets, versions, metric, extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from avedge.runtime.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path, fmt: str) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "format": fmt}


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file in the same directory, then rename: never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(artifact_dir: str | Path) -> dict:
    d = Path(artifact_dir)
    if not d.is_dir():
        raise ArtifactError(f"{d} is not a directory; an artifact is a directory holding "
                            f"{MANIFEST_NAME} and model files (made by `avedge export`)")
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{d} has no {MANIFEST_NAME}; is it an artifact made by `avedge export`?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r} is not supported; this avedge reads {FORMAT_VERSION}"
        )
    return manifest


def read_verified(artifact_dir: str | Path, name: str, manifest: dict) -> bytes:
    """The bytes of one listed file, after checking size and sha256 against the manifest.

    Returning the checked bytes (not a path) means the native runtime loads exactly what
    was verified: the file cannot change between the check and the load.
    """
    rec = manifest.get("files", {}).get(name)
    if rec is None:
        listed = ", ".join(manifest.get("files", {})) or "(none)"
        raise ArtifactError(f"{name!r} is not listed in the manifest; files listed: {listed}")
    path = Path(artifact_dir) / name
    if not path.is_file():
        raise ArtifactError(f"{path} is missing (the manifest lists it)")
    data = path.read_bytes()
    if len(data) != rec["bytes"]:
        raise ArtifactError(
            f"{path} is {len(data)} bytes but the manifest says {rec['bytes']}: the file is "
            f"truncated or was replaced; re-export the artifact"
        )
    digest = sha256_bytes(data)
    if digest != rec["sha256"]:
        raise ArtifactError(
            f"{path}: sha256 mismatch (manifest {rec['sha256'][:12]}…, file {digest[:12]}…): the "
            f"file was modified or corrupted; refusing to load it. Re-export the artifact"
        )
    return data


def verify_all(artifact_dir: str | Path, manifest: dict, skip=()) -> None:
    """Check every listed file (except `skip`, which the caller reads verified itself)."""
    for name, rec in manifest.get("files", {}).items():
        if name in skip:
            continue
        path = Path(artifact_dir) / name
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (the manifest lists it)")
        if path.stat().st_size != rec["bytes"] or sha256_file(path) != rec["sha256"]:
            raise ArtifactError(f"{path} does not match the sha256/size in the manifest: the file "
                                f"was modified, truncated or corrupted; re-export the artifact")
