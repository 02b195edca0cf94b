"""avedge train FAMILY --corpus DIR --out FILE.safetensors [options]

Trains a model family's shipped weights. Resumable: run the same command again to
continue from FILE's checkpoint (FILE with .ckpt.pt); `--fresh` starts over.

A family joins by one line in TRAINERS: a module with `TrainConfig` (a dataclass
whose fields become --options), `train(cfg, fresh=...)` and `final_eval(cfg)`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json

from avedge.cli.common import print_json, quiet_native_logs
from avedge.runtime.errors import AvedgeError, UnknownNameError

TRAINERS = {
    "speech-extractor": "avedge.models.speech_extractor.train",
    # The speech extractor fitted to an NPU (pruned + quantization-aware fine-tuning).
    "speech-extractor-npu": "avedge.models.speech_extractor.train_npu",
}


def register(sub):
    p = sub.add_parser("train", help="train a model family's weights on the synthetic corpus")
    p.add_argument("family", help=f"model family ({', '.join(sorted(TRAINERS))})")
    p.add_argument("--corpus", help="voice bank directory (default: the corpus default)")
    p.add_argument("--out", help="weights file to write (.safetensors); record beside it")
    p.add_argument("--steps", type=int, help="schedule length in optimizer steps")
    p.add_argument("--batch", type=int, help="mixtures per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, help="corpus / init seed")
    p.add_argument("--minutes", type=float, help="stop (and checkpoint) after this wall time")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--workers", type=int, help="processes drawing training mixtures (default "
                   "1: a background thread; more on a GPU machine)")
    p.add_argument("--ema", type=float, help="decay of the weight average the run writes "
                   "(default 0.999; 0: the last step's weights)")
    p.add_argument("--precision", help="arithmetic of the training step: fp32 (default) "
                   "or bf16 (autocast; ~2.4x faster on CPUs with AVX512-BF16 or AMX)")
    p.add_argument("--device", help="torch device to train on (default cpu; e.g. cuda)")
    p.add_argument("--holdout-synth", help="synthesizer kept out of training ('none' for none)")
    p.add_argument("--dims", help="JSON of model dimensions (default: the reference size)")
    p.add_argument("--init", help="weights or checkpoint to start from (speech-extractor: a "
                        "new run grown to --dims; NPU fine-tuning: default the shipped)")
    p.add_argument("--target", help="NPU target to fine-tune for (default hearable-npu)")
    p.add_argument("--mlp-width", type=int, help="MLP units kept per block (NPU fine-tuning)")
    p.add_argument("--log-ranges", type=int,
                   help="int16 log tables in the NPU form's features (NPU fine-tuning; "
                        "default 1)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--eval-only", action="store_true",
                   help="score the weights in --out on the test sets and update the record")
    p.add_argument("--calibration-set", type=int, metavar="N",
                   help="write the family's int8 calibration file from N val-split mixtures "
                        "of --corpus (instead of training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the record as JSON at the end")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.family not in TRAINERS:
        raise UnknownNameError("trainable family", args.family, TRAINERS)
    quiet_native_logs()
    mod = importlib.import_module(TRAINERS[args.family])
    cfg = mod.TrainConfig()
    fields = {f.name for f in dataclasses.fields(cfg)}
    updates = {}
    for name in ("steps", "batch", "lr", "seed", "minutes", "threads", "workers", "ema",
                 "precision", "device", "init", "target", "mlp_width", "log_ranges"):
        if getattr(args, name) is not None:
            if name not in fields:
                raise AvedgeError(f"--{name.replace('_', '-')} does not apply to training "
                                  f"{args.family!r}")
            updates[name] = getattr(args, name)
    if args.holdout_synth is not None and "holdout_synth" in fields:
        updates["holdout_synth"] = None if args.holdout_synth == "none" else args.holdout_synth
    if args.corpus:
        updates["corpus"] = args.corpus
    elif "corpus" in fields and not cfg.corpus:
        from avedge.models.corpus.voicebank import default_bank_dir

        updates["corpus"] = str(default_bank_dir())
    if args.out:
        updates["out"] = args.out
    if args.dims:
        if "dims" not in fields:
            raise AvedgeError(f"--dims does not apply to training {args.family!r} (its "
                              f"dimensions come from the weights it starts from)")
        updates["dims"] = {**cfg.dims, **_parse_dims(args.dims, cfg.dims)}
    if args.device is not None:
        _check_device(args.device)
    cfg = dataclasses.replace(cfg, **updates)
    if args.calibration_set is not None:
        if not hasattr(mod, "write_calibration_set"):
            raise AvedgeError(f"--calibration-set does not apply to {args.family!r}")
        if args.calibration_set < 1:
            raise AvedgeError(f"--calibration-set wants a number of mixtures >= 1; got "
                              f"{args.calibration_set}")
        print_json(mod.write_calibration_set(cfg.corpus, n=args.calibration_set))
        return 0
    if args.eval_only:
        rec = mod.final_eval(cfg)
    else:
        rec = mod.train(cfg, fresh=args.fresh, progress=not args.no_progress)
    if args.json:
        print_json(rec)
    return 0


def _parse_dims(text: str, defaults: dict) -> dict:
    """--dims JSON -> dict of known dimension names, or a clear error."""
    example = '{"df_order": 4}' if "df_order" in defaults else '{"d_model": 64}'
    try:
        dims = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AvedgeError(f"--dims wants a JSON object, e.g. '{example}'; got {text!r} "
                          f"({exc.msg})") from exc
    if not isinstance(dims, dict):
        raise AvedgeError(f"--dims wants a JSON object, e.g. '{example}'; got {text!r}")
    unknown = sorted(set(dims) - set(defaults))
    if unknown:
        raise AvedgeError(f"--dims: unknown dimension(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(sorted(defaults))}")
    return dims


def _check_device(name: str) -> None:
    """Fail before loading the corpus on a device name torch does not know or lacks here."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise AvedgeError(f"--device {name!r} is not a torch device ({exc}); use cpu or "
                          f"cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AvedgeError(f"--device {name!r}: this machine has no CUDA GPU (torch "
                          f"{torch.__version__}); use cpu")
