#!/usr/bin/env python3
"""Pack the voice bank for tools/gpu_train.sh (run here, where the bank is).

    .venv/bin/python tools/pack_bank.py                 # default bank -> .cache/gpu/voicebank.npz
    .venv/bin/python tools/pack_bank.py --bank DIR --out FILE --max-mib 32 --seeds 0

The pack lands under .cache/ (git-ignored), so it travels only when carried: name
`.cache/gpu` in the device call's `carry`. Its size plus the working tree must stay
under 64 MiB: the tracked tree is ~21 MiB, hence the default budget of 32 MiB. Format
and choices: models/corpus/packed.py.
"""

import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".cache" / "gpu" / "voicebank.npz"


def main(argv=None) -> int:
    import argparse

    from avedge.models.corpus.packed import main as packed_main
    from avedge.models.corpus.voicebank import default_bank_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", default=str(default_bank_dir()),
                   help="voice bank directory (default: $AVEDGE_VOICEBANK or "
                        "~/.cache/avedge/voicebank)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"pack file (default {DEFAULT_OUT})")
    p.add_argument("--max-mib", default="32", help="size budget in MiB (default 32)")
    p.add_argument("--seeds", default="0", help="training seeds to pack rooms for (default 0)")
    a = p.parse_args(argv)
    return packed_main(["pack", a.bank, a.out, "--max-mib", a.max_mib, "--seeds", a.seeds])


if __name__ == "__main__":
    sys.exit(main())
