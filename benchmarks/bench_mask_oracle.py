"""What the extractor's output stage can reach at best: oracle masks on the conv-STFT.

The extractor multiplies 12 ms frames (83 Hz bins) by a mask it predicts. Computed from
the clean target instead, the best mask of each kind bounds what any network with that
output stage scores on the issue #4 sets (SI-SDRi, dB):

    irm        |S| / |X| clipped to 1, the mixture's phase (a magnitude mask)
    cirm_tanh  S / X with real and imaginary parts clipped to [-1, 1] (the model's tanh)

    python benchmarks/bench_mask_oracle.py --n 100
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from avedge.models.common.conv_stft import LOOKAHEAD, N_BINS, ConvSTFT
from avedge.models.corpus.mixtures import eval_mixtures
from avedge.models.corpus.voicebank import default_bank_dir, open_bank
from avedge.models.speech_extractor import model as se

SETS = {  # name -> eval_mixtures overrides (issue #4: 1 talker at 0 dB SIR, 5 dB SNR)
    "talker+noise": {},
    "talker only": {"snr_db": 60.0},
    "noise only": {"n_interferers": 0},
}


def oracle_scores(examples: list[dict]) -> dict[str, float]:
    stft = ConvSTFT()
    x = torch.tensor(np.stack([e["mixture"] for e in examples]))
    s = torch.tensor(np.stack([e["target"] for e in examples]))
    n = x.shape[1] // se.CHUNK * se.CHUNK
    x, s = x[:, :n], s[:, :n]
    tail = stft.init_state(len(examples))[0]
    spec_x, _ = stft.analyze(x, tail)
    spec_s, _ = stft.analyze(s, tail)
    xr, xi, sr, si = spec_x[:, :N_BINS], spec_x[:, N_BINS:], spec_s[:, :N_BINS], spec_s[:, N_BINS:]
    power = xr * xr + xi * xi + 1e-10
    mr, mi = (sr * xr + si * xi) / power, (si * xr - sr * xi) / power  # S / X
    masks = {"irm": (((sr * sr + si * si) / power).sqrt().clamp(max=1.0), torch.zeros_like(mr)),
             "cirm_tanh": (mr.clamp(-1, 1), mi.clamp(-1, 1))}
    out = {}
    for name, (ar, ai) in masks.items():
        y, _ = stft.synthesize(se.complex_mul(torch.cat([ar, ai], 1), spec_x),
                               stft.init_state(len(examples))[1])
        ref, mix = s[:, : n - LOOKAHEAD], x[:, : n - LOOKAHEAD]
        out[name] = round(se.metric(y[:, LOOKAHEAD:], ref, mix)["si_sdri_db"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None, help="voice bank (default: the corpus default)")
    ap.add_argument("--n", type=int, default=100, help="mixtures per set")
    args = ap.parse_args()
    bank = open_bank(args.corpus or default_bank_dir())
    rows = {name: oracle_scores(eval_mixtures(bank, n=args.n, **kw)) for name, kw in SETS.items()}
    print(json.dumps({"n": args.n, "si_sdri_db": rows}, indent=1))


if __name__ == "__main__":
    main()
