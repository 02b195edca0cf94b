import hashlib

import numpy as np
import pytest
from avedge.models.corpus import voicebank
from avedge.models.corpus.mixtures import MixtureSampler, eval_mixtures
from avedge.models.corpus.voices import catalogue, split_of
from avedge.runtime.errors import AvedgeError


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bank_has_timings_that_cover_the_audio(bank_dir):
    bank = voicebank.open_bank(bank_dir)
    assert {u.synth for u in bank.utts} == {"piper", "kokoro", "espeak"}
    for u in bank.utts:
        dur = u.n / bank.sample_rate
        starts = [p[1] for p in u.phones]
        assert u.phones and starts == sorted(starts), u.voice
        assert all(p[2] > p[1] for p in u.phones), u.voice
        # the last phone ends inside the audio and no later than 0.1 s past the end
        assert 0.3 * dur < u.phones[-1][2] <= dur + 0.1, (u.voice, u.phones[-1], dur)
        assert len(u.words) >= 3 and u.words[0][0], u.voice


def test_bank_rebuild_is_byte_identical(bank_dir, tmp_path):
    # piper's stock graph draws unseeded noise; ours feeds seeded noise in, so this holds.
    voicebank.build_bank(tmp_path, voices=["piper:joe", "espeak:en-us+m3@55"],
                         n_per_voice={"piper": 1, "espeak": 1}, seed=0)
    again = tmp_path / "again"
    voicebank.build_bank(again, voices=["piper:joe", "espeak:en-us+m3@55"],
                         n_per_voice={"piper": 1, "espeak": 1}, seed=0)
    files = sorted(f for f in (tmp_path / "voices").iterdir() if f.suffix != ".time")
    assert len(files) == 4
    for f in files:
        assert _digest(f) == _digest(again / "voices" / f.name), f.name


def test_splits_are_disjoint_in_voice_and_holdout_takes_a_whole_synth():
    ids = [v.id for v in catalogue()]
    splits = {s: {v for v in ids if split_of(v) == s} for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert all(len(splits[s]) > 10 for s in splits)
    held = {v for v in ids if split_of(v, holdout_synth="kokoro") == "test"}
    assert held == {v for v in ids if v.startswith("kokoro:")}
    assert not any(split_of(v, "kokoro") != "test" for v in ids if v.startswith("kokoro:"))


def test_sampler_shapes_levels_and_determinism(bank_dir):
    s = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=2.0, enroll_seconds=3.0)
    a = s.sample()
    assert a["mixture"].shape == a["target"].shape == (32000,)
    assert a["mixture"].dtype == np.float32 and 0 < len(a["enrollment"]) <= 48000
    assert np.abs(a["mixture"]).max() <= 0.951
    assert a["voice"] not in a["interferers"]
    b = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=2.0,
                       enroll_seconds=3.0).sample()
    assert all(np.array_equal(a[k], b[k]) for k in ("mixture", "target", "enrollment"))
    c = MixtureSampler(str(bank_dir), split="train", seed=6, seconds=2.0).sample()
    assert not np.array_equal(a["mixture"], c["mixture"])


def test_sampler_voices_stay_in_their_split(bank_dir):
    for split in ("train", "val", "test"):
        s = MixtureSampler(str(bank_dir), split=split, seed=0, seconds=1.0)
        for ex, _ in zip(s, range(6)):
            for v in [ex["voice"], *ex["interferers"]]:
                assert split_of(v) == split


def test_eval_set_has_the_requested_sir_and_snr(bank_dir):
    for ex in eval_mixtures(str(bank_dir), "test", n=3, seed=1, seconds=2.0):
        m, t = ex["mixture"].astype(np.float64), ex["target"].astype(np.float64)
        # 0 dB SIR and 5 dB SNR against the target: residual power = (1 + 10^-0.5) P_t
        sdr = 10 * np.log10(np.sum(t**2) / np.sum((m - t) ** 2))
        assert sdr == pytest.approx(-1.19, abs=0.1)
        assert len(ex["interferers"]) == 1


def test_bad_split_and_empty_bank_are_user_errors(bank_dir, tmp_path):
    with pytest.raises(AvedgeError, match="unknown split"):
        MixtureSampler(str(bank_dir), split="dev")
    with pytest.raises(AvedgeError, match="no voice bank"):
        voicebank.open_bank(tmp_path)


def test_training_enrollments_range_from_noisy_to_clean_eval_ones_stay_noisy(
        bank_dir, monkeypatch):
    from avedge.models.corpus import mixtures

    def enrollment_snrs(augment):
        snrs = []
        real = mixtures.A.scale_to_ratio
        monkeypatch.setattr(mixtures.A, "scale_to_ratio",
                            lambda x, noise, snr: snrs.append(snr) or real(x, noise, snr))
        s = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=1.0, augment=augment)
        utts = s.bank.by_voice[s.voices[0]]
        for i in range(200):
            s._enrollment(utts, 0, np.random.default_rng(i))
        monkeypatch.undo()
        return np.array(snrs)

    train = enrollment_snrs(True)
    assert 0.7 < len(train) / 200 < 0.9  # ~20 % clean: no noise added at all
    assert 0.3 < np.mean(train > 20) < 0.5 and train.max() <= 40 and train.min() >= 5
    evals = enrollment_snrs(False)
    assert len(evals) == 200 and evals.min() >= 5 and evals.max() <= 20  # issue #4's range


def test_solo_share_leaves_the_target_alone_in_noise(bank_dir):
    solo = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=1.0, p_solo=1.0)
    for ex, _ in zip(solo, range(4)):
        assert ex["interferers"] == []
    some = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=1.0, p_solo=0.5)
    n_solo = sum(not some.sample_at(i)["interferers"] for i in range(40))
    assert 8 <= n_solo <= 32
    with pytest.raises(AvedgeError, match="p_solo is a probability"):
        MixtureSampler(str(bank_dir), split="train", p_solo=1.5)


def test_voice_shift_moves_target_and_enrollment_together_never_in_eval_sets(
        bank_dir, monkeypatch):
    from avedge.models.corpus import mixtures

    calls = []
    real = mixtures.A.pitch_shift
    monkeypatch.setattr(mixtures.A, "pitch_shift",
                        lambda x, st, **kw: calls.append((len(x), st)) or real(x, st, **kw))
    monkeypatch.setattr(mixtures, "P_PITCH", 0.0)  # only the voice shift calls pitch_shift
    s = MixtureSampler(str(bank_dir), split="train", seed=5, seconds=1.0, enroll_seconds=3.0)
    shifted = 0
    for i in range(12):
        calls.clear()
        ex = s.sample_at(i)
        if ex["voice_shift"]:
            shifted += 1
            assert [st for _, st in calls] == [ex["voice_shift"]] * 2  # target, enrollment
            assert abs(ex["voice_shift"]) <= mixtures.VOICE_SHIFT
        else:
            assert calls == []
    assert 2 <= shifted <= 10
    calls.clear()
    assert all(e["voice_shift"] == 0 for e in eval_mixtures(str(bank_dir), "test", n=6,
                                                              seconds=1.0))
    assert calls == []
