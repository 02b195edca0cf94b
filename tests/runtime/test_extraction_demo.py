"""`avedge demo`'s speech-extraction step (issue #19, item 7): the mean SI-SDRi over
held-out synthetic mixtures and mixtures of reserved real recorded speakers, one example's
wavs written. A tiny random extractor: the figures are checked for what they summarise,
not for quality (the full demo runs the shipped weights: tests/test_cli.py)."""

import numpy as np
import pytest
from avedge.models.corpus import real_eval
from avedge.runtime.audio_io import read_audio
from avedge.runtime.pipelines.extraction import si_sdr_db

from avedge.cli.extract_cmd import demo


@pytest.fixture(scope="module")
def test_bank(tmp_path_factory):
    """Two espeak test-split voices, two utterances each (~1 s to build)."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices, split_of

    d = tmp_path_factory.mktemp("bank")
    voices = small_bank_voices({"test": 2})
    assert {split_of(v) for v in voices} == {"test"}
    voicebank.build_bank(d, voices=voices, n_per_voice={"espeak": 2}, seed=0)
    return d, voices


def test_demo_scores_synthetic_and_real_sets(tiny_extractor, test_bank, tmp_path):
    bank, bank_voices = test_bank
    r = demo(tmp_path / "se", artifact=tiny_extractor[1], bank_dir=bank, n_synthetic=3,
             n_real=3)
    assert r["skipped"] == {}
    syn, real = r["sets"]["synthetic"], r["sets"]["real"]
    assert (syn["mixtures"], real["mixtures"]) == (3, 3)
    assert set(syn["voices"]) <= set(bank_voices)  # held-out synthetic voices
    assert set(real["voices"]) <= set(real_eval.speakers())  # reserved real people
    assert len(real["voices"]) == 3  # round-robin over the three recording families
    for s in (syn, real):
        gains = [m["after_db"] - m["before_db"] for m in s["per_mixture"]]
        assert s["si_sdri_db"] == pytest.approx(np.mean(gains), abs=0.02)
        assert s["worst_si_sdri_db"] == pytest.approx(min(gains), abs=0.02)
        assert s["below_input"] == sum(g < 0 for g in gains)
        assert abs(s["before_db"]) < 3  # the condition: one talker at 0 dB, noise at 5 dB
        assert s["chunks"] == 3 * -(-(4 * 16000 + 64) // 128)
    # The example's wavs are the first synthetic mixture and what the extractor made of it.
    ex = r["example"]
    assert ex["si_sdr_after_db"] == syn["per_mixture"][0]["after_db"]
    wav = {n: read_audio(tmp_path / "se" / f"{n}.wav").samples
           for n in ("mixture", "enrollment", "reference", "extracted")}
    assert si_sdr_db(wav["mixture"], wav["reference"]) == pytest.approx(
        ex["si_sdr_before_db"], abs=0.05)  # 16-bit wavs
    assert si_sdr_db(wav["extracted"], wav["reference"]) == pytest.approx(
        ex["si_sdr_after_db"], abs=0.05)


def test_demo_without_the_real_voice_packages_says_so(tiny_extractor, test_bank, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached recordings
    monkeypatch.setattr(real_eval, "FLITE", "no-such-flite")  # as if flite were missing
    r = demo(tmp_path / "se", artifact=tiny_extractor[1], bank_dir=test_bank[0],
             n_synthetic=2, n_real=2)
    assert list(r["sets"]) == ["synthetic"] and r["sets"]["synthetic"]["mixtures"] == 2
    assert "flite" in r["skipped"]["real"] and "\n" not in r["skipped"]["real"]
