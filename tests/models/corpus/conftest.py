"""A tiny voice bank shared by the corpus tests: piper + espeak + one Kokoro voice.

Built once per session (~15 s on 2 cores). espeak voices are taken from the catalogue in
order until val and test each have two, so every split can form a mixture.
"""

import pytest
from avedge.models.corpus import voicebank
from avedge.models.corpus.voices import small_bank_voices

N_PER_VOICE = {"piper": 3, "kokoro": 2, "espeak": 3}


def tiny_voices() -> list[str]:
    return ["piper:joe", "kokoro:jf_alpha+jm_kumo@0.5"] + small_bank_voices()


@pytest.fixture(scope="session")
def bank_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bank")
    voicebank.build_bank(d, voices=tiny_voices(), n_per_voice=N_PER_VOICE, seed=0)
    return d
