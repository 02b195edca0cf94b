"""Small helpers shared by CLI commands: JSON output and plain tables."""

from __future__ import annotations

import json
import sys


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
