#!/usr/bin/env bash
# Train a family on a GPU machine that got only the working tree plus a packed voice bank.
#
#   tools/gpu_train.sh [TRAINER] [-- TRAINER OPTIONS...]      (TRAINER: speech-extractor)
#
# Here, first: .venv/bin/python tools/pack_bank.py   (-> .cache/gpu/voicebank.npz)
# Then on the device (carry .cache/gpu), e.g. within one 10-minute command:
#   OUT=$OUT MINUTES=7 tools/gpu_train.sh speech-extractor -- --batch 32 --lr 5e-4
#
# What it does: makes the tree importable as `avedge` without installing (a folder of
# links, on PYTHONPATH: spawned workers inherit it), unpacks the bank (mu-law -> int16,
# the rooms mixtures reverberate with: AVEDGE_RIRS), copies the shipped weights and their
# record in as the run's OUT so it warm-starts from them (pass --fresh to start over),
# trains for MINUTES with mixtures drawn by WORKERS processes, then copies the weights,
# the record and the log to $OUT. The optimizer checkpoint (27 MB) stays behind: the
# next run warm-starts from the weights it returned.
#
# Environment: OUT (default ./gpu-out), PACK (default .cache/gpu/voicebank.npz), PYTHON
# (default python3), MINUTES (training budget, default 7), DEVICE (default cuda when
# there is one, else cpu), WORKERS (default: cores - 2 on cuda, else 1), THREADS (torch
# threads of the training process; default 4 on cuda, else 1).
# Needs only torch, numpy, scipy and safetensors (the GPU image has them): no executorch,
# torchao, pyroomacoustics, soundfile or tqdm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$PWD/gpu-out}"
PACK="${PACK:-$ROOT/.cache/gpu/voicebank.npz}"
MINUTES="${MINUTES:-7}"
TRAINER="speech-extractor"
if [[ $# -gt 0 && "$1" != "--" ]]; then TRAINER="$1"; shift; fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

die() { echo "gpu_train: error: $*" >&2; exit 2; }
[[ -f "$PACK" ]] || die "no packed bank at $PACK; run tools/pack_bank.py here and carry it"
missing=$("$PYTHON" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "numpy", "scipy", "safetensors")
               if importlib.util.find_spec(m) is None))
PY
)
[[ -z "$missing" ]] || die "$PYTHON lacks $missing (training needs torch, numpy, scipy, safetensors)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_train.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# avedge's subpackages are top-level folders (setup.py maps them): link them into place.
mkdir -p "$WORK/py/avedge"
for entry in "$ROOT"/avedge/*; do ln -s "$entry" "$WORK/py/avedge/"; done
for pkg in runtime models quantize targets cpp_kernels; do
  ln -s "$ROOT/$pkg" "$WORK/py/avedge/$pkg"
done
export PYTHONPATH="$WORK/py${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PYTHON" -m avedge.models.corpus.packed unpack "$PACK" "$WORK" >/dev/null
export AVEDGE_RIRS="$WORK/rirs.npz"

read -r DEFAULT_DEVICE CORES < <("$PYTHON" -c \
  'import os, torch; print("cuda" if torch.cuda.is_available() else "cpu", os.cpu_count())')
DEVICE="${DEVICE:-$DEFAULT_DEVICE}"
if [[ "$DEVICE" == cuda* ]]; then
  WORKERS="${WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}"; THREADS="${THREADS:-4}"
else
  WORKERS="${WORKERS:-1}"; THREADS="${THREADS:-1}"
fi

# The trainer's shipped weights (its default --out) become this run's starting point.
SHIPPED=$("$PYTHON" -c 'import importlib, sys
from avedge.models.registry import trainers
t = trainers()
if sys.argv[1] not in t:
    sys.exit(f"gpu_train: error: unknown trainer {sys.argv[1]!r}; available: {sorted(t)}")
print(importlib.import_module(t[sys.argv[1]]).TrainConfig().out)' "$TRAINER")
NAME="$(basename "$SHIPPED")"
mkdir -p "$WORK/run" "$OUT"
if [[ -f "$SHIPPED" ]]; then
  cp "$SHIPPED" "$WORK/run/$NAME"
  [[ -f "${SHIPPED%.*}.json" ]] && cp "${SHIPPED%.*}.json" "$WORK/run/${NAME%.*}.json"
fi
touch "$WORK/started"  # only files the run rewrote come back

echo "gpu_train: $TRAINER on $DEVICE, $WORKERS mixture workers, $MINUTES min -> $OUT" >&2
status=0
"$PYTHON" -c 'import sys; from avedge.cli import main; sys.exit(main(sys.argv[1:]))' \
  train "$TRAINER" --corpus "$WORK/bank" --out "$WORK/run/$NAME" --minutes "$MINUTES" \
  --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" --no-progress "$@" \
  2>&1 | tee "$OUT/train.log" || status=$?
for f in "$WORK/run/$NAME" "$WORK/run/${NAME%.*}.json"; do
  if [[ -f "$f" && "$f" -nt "$WORK/started" ]]; then cp "$f" "$OUT/"; fi
done
exit "$status"
