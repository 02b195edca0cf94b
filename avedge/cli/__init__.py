"""The `avedge` command line.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
Adding a command is one new module and one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys

from avedge.runtime.errors import AvedgeError

COMMANDS = [
    "targets_cmd",
    "export_cmd",
    "info_cmd",
    "bench_cmd",
    "demo_cmd",
    "train_cmd",
    "extract_cmd",
    "lipread_cmd",
    "lipsync_cmd",
    "kiosk_cmd",
    "listen_cmd",
    "corpus_cmd",
    "sweep_cmd",
    "recipes_cmd",
    "sensitivity_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avedge", description="Edge runtime for audio-visual speech models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"avedge.cli.{name}").register(sub)
    return parser


# Packages of the extras (pyproject.toml) that `pip install avedge` leaves out, and the
# extra that brings each: a runtime-only install gets one line naming it, not a traceback.
EXTRA_OF = {"torch": "export", "torchao": "export", "executorch": "export", "onnx": "export",
            "onnxscript": "export", "safetensors": "export", "tqdm": "train",
            "pyaudio": "audio", "matplotlib": "sweep", "ray": "sweep", "torch_pruning": "sweep",
            "av": "lipread", "flashlight": "lipread", "cv2": "lipread", "jiwer": "lipread",
            "PIL": "lipsync", "selenium": "dev"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AvedgeError as exc:
        print(f"avedge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"avedge {args.command}: error: this needs {exc.name}, which is not installed "
              f"here; pip install 'avedge[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`avedge lipread ... | head`): stop quietly
        try:  # and let the interpreter's last flush at exit find somewhere to write
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
