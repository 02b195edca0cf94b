"""A tiny voice bank shared by the corpus tests: piper + espeak + one Kokoro voice.

Built once per session (~15 s on 2 cores). espeak voices are taken from the catalogue in
order until val and test each have two, so every split can form a mixture.
"""

import pytest
from avedge.models.corpus import voicebank
from avedge.models.corpus.voices import catalogue, split_of

N_PER_VOICE = {"piper": 3, "kokoro": 2, "espeak": 3}


def tiny_voices() -> list[str]:
    chosen, per_split = [], {"train": 0, "val": 0, "test": 0}
    for v in catalogue(("espeak",)):
        s = split_of(v.id)
        if per_split[s] < (3 if s == "train" else 2):
            chosen.append(v.id)
            per_split[s] += 1
        if all(n >= (3 if s == "train" else 2) for s, n in per_split.items()):
            break
    return ["piper:joe", "kokoro:jf_alpha+jm_kumo@0.5"] + chosen


@pytest.fixture(scope="session")
def bank_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bank")
    voicebank.build_bank(d, voices=tiny_voices(), n_per_voice=N_PER_VOICE, seed=0)
    return d
