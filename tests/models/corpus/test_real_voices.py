"""Real recorded people for training (issue #19): festival voices and KLettres speakers,
never the recordings reserved for evaluation."""

import numpy as np
import pytest
from avedge.models.corpus import voice_festival, voice_klettres
from avedge.models.corpus.voices import REAL_SYNTHS, REAL_VAL, Voice, catalogue, split_of
from avedge.runtime.errors import AvedgeError


@pytest.mark.parametrize("vid", ["festival:kal_diphone", "festival:cmu_us_slt_arctic_hts",
                                 "klettres:en", "klettres:en_GB", "klettres:de", "klettres:fr",
                                 "klettres:es", "klettres:it"])
def test_reserved_recordings_are_refused(vid):
    with pytest.raises(AvedgeError, match="reserved for evaluation"):
        Voice.parse(vid)


def test_real_voices_split_into_train_and_val_only():
    ids = [v.id for v in catalogue(REAL_SYNTHS)]
    assert len(ids) == len(voice_festival.VOICES) + len(voice_klettres.LANGUAGES)
    assert {split_of(v) for v in ids} == {"train", "val"}
    assert {v for v in ids if split_of(v) == "val"} == set(REAL_VAL)
    assert not any(v.startswith(REAL_SYNTHS) for v in (x.id for x in catalogue()))  # opt-in


def test_klettres_utterance_chains_one_speakers_clips():
    u = voice_klettres.synthesize("da", np.random.default_rng(0))
    assert u.sample_rate == 16000 and u.audio.dtype == np.float32
    assert 0.5 < u.seconds < 15 and 0.3 < np.abs(u.audio).max() <= 0.7 + 1e-6
    again = voice_klettres.synthesize("da", np.random.default_rng(0))
    np.testing.assert_array_equal(u.audio, again.audio)


@pytest.mark.parametrize("name", ["ked_diphone", "hindi_NSK_diphone"])
def test_festival_voice_speaks_its_own_script(name):
    u = voice_festival.synthesize("the driver bought a thick book", name,
                                  np.random.default_rng(1))
    assert u.seconds > 0.5 and np.isfinite(u.audio).all()
    frames = np.sqrt(np.mean(u.audio[: len(u.audio) // 160 * 160].reshape(-1, 160) ** 2, 1))
    assert (frames > 0.05).mean() > 0.3  # mostly voiced, not silence


def test_pseudo_sentences_use_the_voices_script():
    rng = np.random.default_rng(0)
    assert all("\u0900" <= c <= "\u097f" for c in voice_festival.pseudo_sentence(
        "devanagari", rng).replace(" ", ""))
    assert all(c.isascii() for c in voice_festival.pseudo_sentence("latin", rng))


def test_build_bank_names_unknown_synthesizers(tmp_path, capsys):
    from avedge.cli import main

    assert main(["corpus", "--build-bank", str(tmp_path / "b"), "--synths",
                 "espeak,festvial"]) == 2
    err = capsys.readouterr().err
    assert "festvial" in err and "festival, klettres" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()  # nothing built


def test_train_refuses_a_share_outside_0_1(tmp_path, capsys):
    from avedge.cli import main

    assert main(["train", "speech-extractor", "--corpus", str(tmp_path), "--real-share", "2",
                 "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "--real-share is a share of the training mixtures, 0..1; got 2" in \
        capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def test_trainer_draws_real_share_and_validates_on_held_out_real_people(tmp_path):
    from avedge.models.corpus.voicebank import build_bank
    from avedge.models.corpus.voices import small_bank_voices
    from avedge.models.speech_extractor.train import CorpusData, TrainConfig

    real = ["klettres:cs", "klettres:da", "klettres:nl", "klettres:hu"]  # 2 train, 2 val
    synthetic = small_bank_voices({"train": 3, "val": 2, "test": 0})
    bank = build_bank(tmp_path, voices=real + synthetic, n_per_voice=3)
    # The bank says what was said: KLettres chains letters, not the corpus sentence, and
    # has no phone timings, so lip reading and lips-pose never draw it.
    assert all(u.text == "" and not u.phones for v in real for u in bank.by_voice[v])
    assert set(bank.voices_in("train", timed=True)) == {
        v for v in synthetic if split_of(v) == "train"}
    data = CorpusData(TrainConfig(corpus=str(tmp_path), real_share=0.4))
    share = data.describe()["target_share"]
    assert abs(share["klettres"] - 0.4) < 0.1, share  # 2 real voices repeated to ~40 %
    exs = data.real_val_set(6)
    assert len(exs) == 6 and {e["voice"] for e in exs} <= {"klettres:nl", "klettres:hu"}
    assert all(e["voice"] not in e["interferers"] and e["sir_db"] == 0.0 for e in exs)
    assert all(split_of(v) == "val" for e in exs for v in e["interferers"])
