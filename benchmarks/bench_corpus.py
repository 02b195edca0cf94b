"""Corpus speed: mixtures + lips-pose per second on one core, ROI frames per second on two,
and the voice bank's build time per synthesizer (read from bank.json).

    python benchmarks/bench_corpus.py [--bank DIR] [--repeats 5]

Medians over repeats; the machine is shared, so compare ratios in one run.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from avedge.models.corpus import visemes
from avedge.models.corpus.face import FaceVariation
from avedge.models.corpus.mixtures import MixtureSampler
from avedge.models.corpus.render import make_speaker, render_roi
from avedge.models.corpus.voicebank import open_bank


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bank")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args()
    bank = open_bank(a.bank)
    s = MixtureSampler(bank, split="train", seed=0)
    s.sample_at(0)  # room impulse responses are computed once per seed
    torch.set_num_threads(1)
    rates = []
    for r in range(a.repeats):
        t = time.perf_counter()
        for i in range(a.n):
            ex = s.sample_at(r * a.n + i)
            u = bank.by_voice[ex["voice"]][ex["utt_index"]]
            visemes.lips_pose(u.phones, 100, offset=ex["target_offset"] / 16000,
                              time_scale=1 / ex["speed"])
        rates.append(a.n / (time.perf_counter() - t))
    torch.set_num_threads(2)
    sp = make_speaker(FaceVariation())
    u = bank.utts[0]
    poses = np.tile(visemes.lips_pose(u.phones, 100), (5, 1))  # 500 frames
    render_roi(sp, poses[:64])
    fps = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        render_roi(sp, poses)
        fps.append(len(poses) / (time.perf_counter() - t))
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load {os.getloadavg()[0]:.1f}",
        "mixtures_plus_lipspose_per_s_1core_median": round(statistics.median(rates), 1),
        "roi_frames_per_s_2threads_median": round(statistics.median(fps), 1),
        "bank_build": bank.info().get("synths", {}),
    }, indent=1))


if __name__ == "__main__":
    main()
