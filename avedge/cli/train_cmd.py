"""avedge train TRAINER [--option VALUE ...]

Trains a model family's weights. Resumable: run the same command again to continue from
OUT's checkpoint (OUT with .ckpt.pt, kept on this machine); without one a run
warm-starts from OUT itself when it exists; `--fresh` starts over.

The trainers come from the family specs (`Family.trainers`; registry.trainers()). A
trainer is a module with a `TrainConfig` dataclass, `train(cfg, fresh=..., progress=...)`
and `final_eval(cfg)` (optionally `write_calibration_set`); every field of its
TrainConfig is an option (`steps` -> --steps, `mlp_width` -> --mlp-width), typed by its
annotation and explained by the field's comment. The options are built once a trainer
is named, so no other command imports torch or the families.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import io
import json
import textwrap
import tokenize
import typing

from avedge.cli.common import print_json, quiet_native_logs
from avedge.runtime.errors import AvedgeError, UnknownNameError


def register(sub):
    p = sub.add_parser("train", help="train a model family's weights on the synthetic corpus",
                       description="Train a model family's weights. `avedge train TRAINER -h` "
                                   "lists that trainer's options.")
    p.add_argument("trainer", nargs="?", help="trainer name (e.g. speech-extractor, "
                   "speech-extractor-npu); run without one to list them")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the trainer's options")
    p.set_defaults(func=run)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line through the CLI's error path, not a usage dump
        raise AvedgeError(message)


def run(args) -> int:
    from avedge.models.registry import trainers

    table = trainers()
    if not args.trainer:
        raise AvedgeError(f"name a trainer: avedge train TRAINER [options]; available: "
                          f"{', '.join(sorted(table))}")
    if args.trainer not in table:
        raise UnknownNameError("trainer", args.trainer, table)
    quiet_native_logs()
    mod = importlib.import_module(table[args.trainer])
    parser = options_parser(args.trainer, mod.TrainConfig)
    opts, rest = parser.parse_known_args(args.options)
    if rest:
        flag = next((t.split("=")[0] for t in rest if t.startswith("-")), rest[0])
        raise AvedgeError(f"{flag} does not apply to training {args.trainer!r}; its options: "
                          f"`avedge train {args.trainer} -h`")
    cfg = config_from(opts, mod.TrainConfig)
    if opts.calibration_set is not None:
        from avedge.models.registry import family_of_trainer

        # The family's own calibration file, written by its main trainer's command only
        # (a fine-tuning trainer such as speech-extractor-npu reads it, never rewrites it).
        fam = family_of_trainer(args.trainer)
        write = fam.write_calibration_set if fam.name == args.trainer else None
        if write is None:
            raise AvedgeError(f"--calibration-set does not apply to {args.trainer!r}")
        if opts.calibration_set < 1:
            raise AvedgeError(f"--calibration-set wants a number of mixtures >= 1; got "
                              f"{opts.calibration_set}")
        print_json(write(cfg.corpus, n=opts.calibration_set))
        return 0
    if opts.eval_only:
        rec = mod.final_eval(cfg)
    else:
        rec = mod.train(cfg, fresh=opts.fresh, progress=not opts.no_progress)
    if opts.json:
        print_json(rec)
    return 0


# ----------------------------------------------------------------------------- options

def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def options_parser(trainer: str, config: type) -> argparse.ArgumentParser:
    """--options from the config's fields, plus the run's own flags."""
    p = _Parser(prog=f"avedge train {trainer}", allow_abbrev=False,
                description=(inspect.getmodule(config).__doc__ or "").split("\n\n")[0])
    defaults = config()
    helps = field_comments(config)
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        default = getattr(defaults, f.name)
        text = helps.get(f.name, f.name.replace("_", " ")).replace("%", "%%")
        kind = _base_type(hints[f.name])
        if kind is bool:
            p.add_argument(flag_of(f.name), dest=f.name, action="store_true", default=None,
                           help=text)
            continue
        shown = json.dumps(default) if isinstance(default, dict) else default
        if _optional(hints[f.name]):
            text += " ('none' for none)"
        p.add_argument(flag_of(f.name), dest=f.name, default=None,
                       metavar="JSON" if kind is dict else f.name.upper(),
                       help=f"{text} (default: {shown})")
    run = p.add_argument_group("run")
    run.add_argument("--fresh", action="store_true",
                     help="start from scratch (or --init): ignore the checkpoint and OUT")
    run.add_argument("--eval-only", action="store_true",
                     help="score the weights in --out on the test sets and update the record")
    run.add_argument("--calibration-set", type=int, metavar="N",
                     help="write the family's int8 calibration file from N val-split mixtures "
                          "of --corpus (instead of training)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the record as JSON at the end")
    return p


def config_from(opts: argparse.Namespace, config: type):
    """The config with the options given on the command line; values typed per field."""
    cfg = config()
    hints = typing.get_type_hints(config)
    updates = {}
    for f in dataclasses.fields(config):
        text = getattr(opts, f.name)
        if text is None:
            continue
        updates[f.name] = _value(f, hints[f.name], text, getattr(cfg, f.name))
    if "corpus" in {f.name for f in dataclasses.fields(config)} and not updates.get(
            "corpus", cfg.corpus):
        from avedge.models.corpus.voicebank import default_bank_dir

        updates["corpus"] = str(default_bank_dir())
    return dataclasses.replace(cfg, **updates)


def _value(f: dataclasses.Field, hint, text, default):
    kind = _base_type(hint)
    if kind is bool:
        return bool(text)
    if _optional(hint) and text.lower() == "none":
        return None
    if kind is dict:
        return {**default, **_parse_object(flag_of(f.name), text, default,
                                           f.metadata.get("keys", "key"))}
    try:
        return kind(text)
    except ValueError as exc:
        raise AvedgeError(f"{flag_of(f.name)} wants {kind.__name__}; got {text!r}") from exc


def _optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _base_type(hint) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return typing.get_origin(base) or base


def _parse_object(flag: str, text: str, defaults: dict, noun: str) -> dict:
    """A JSON object of known names (keys of the default), or a clear error."""
    example = json.dumps({k: v for k, v in list(defaults.items())[:1]})
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AvedgeError(f"{flag} wants a JSON object, e.g. '{example}'; got {text!r} "
                          f"({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise AvedgeError(f"{flag} wants a JSON object, e.g. '{example}'; got {text!r}")
    unknown = sorted(set(obj) - set(defaults))
    if unknown:
        raise AvedgeError(f"{flag}: unknown {noun}(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(sorted(defaults))}")
    return obj


def field_comments(config: type) -> dict[str, str]:
    """Field name -> the comment lines just above it and the comment on its line."""
    import ast

    src = textwrap.dedent(inspect.getsource(config))
    lines = src.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline)
                if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(src).body[0].body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above, row = [], node.lineno - 1
        while row in comments and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments[row])
            row -= 1
        own = [comments[r] for r in range(node.lineno, node.end_lineno + 1) if r in comments]
        if above or own:
            out[node.target.id] = " ".join(above + own)
    return out
