"""Small helpers shared by CLI commands: JSON output and plain tables."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def quiet_native_logs() -> None:
    """Silence Python-side warnings and logs from the ML stack that are not about the
    user's input. Never imports torch (an ONNX-only device has none): torch resets its
    loggers' levels when it is imported, so call this again once a backend has loaded."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("torch", "torch.utils._pytree", "torchao", "root", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def default_artifact(family: str, target: str = "cpu", weights: str | None = None) -> Path:
    """A family's shipped (or given) weights exported for `target`, cached by weights hash
    and manifest format (an older avedge's cached export is made again, not refused). The
    model code is imported here only: with --artifact a command never imports it."""
    from avedge.api import export
    from avedge.models.registry import get_family
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.fsutil import build_lock
    from avedge.runtime.manifest import FORMAT_VERSION

    w = Path(weights) if weights else get_family(family).weights["default"]
    if not w.is_file():
        raise AvedgeError(f"no {family} weights at {w}; train them "
                          f"(`avedge train {family}`) or pass --artifact DIR")
    h = hashlib.sha256(w.read_bytes())
    # What the manifest carries beside the weights (a lip reader's vocabulary, lexicon and
    # grammar) is part of the key: a changed grammar re-exports.
    h.update(json.dumps(get_family(family).manifest_extra(), sort_keys=True).encode())
    digest = h.hexdigest()[:12]
    cache = Path.home() / ".cache" / "avedge" / "artifacts"
    out = cache / f"{family}-{target}-v{FORMAT_VERSION}-{digest}"
    with build_lock(out):
        if not (out / "manifest.json").exists():
            print(f"exporting {w.name} for target {target} once (cached at {out})",
                  file=sys.stderr)
            export(family, target, out, weights=str(w))
    return out
