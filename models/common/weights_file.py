"""A family's weights file: one safetensors file, the family name and dims in its metadata.

Every family writes and reads its shipped weights through these two functions, so the
checks (the file exists, is readable, holds this family's weights) and the atomic,
world-readable write are the same everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_path


def write_weights(tensors: dict, path: str | Path, family: str, dims: dict,
                  meta: dict | None = None) -> None:
    """tensors (name -> torch tensor) into `path` atomically; `meta` values as strings."""
    from safetensors.torch import save_file

    metadata = {"family": family, "dims": json.dumps(dims)}
    metadata.update({k: str(v) for k, v in (meta or {}).items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0644: safetensors (and mkstemp) create 0600 files; weights ship in the package.
    with atomic_path(path, mode=0o644) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_weights(path: str | Path, family: str, unnamed_ok: bool = False) -> tuple[dict, dict]:
    """-> (tensors, metadata) of a weights file of `family`. unnamed_ok: a file without a
    family name is taken as this family's (weights written before the name was recorded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise AvedgeError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types
        raise AvedgeError(f"cannot read weights {str(path)!r}: {exc}") from exc
    if meta.get("family", family if unnamed_ok else None) != family:
        raise AvedgeError(f"{str(path)!r} holds {meta.get('family')!r} weights, not {family!r}")
    return tensors, meta
