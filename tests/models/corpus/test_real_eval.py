"""The reserved real-voice evaluation set (models/corpus/real_eval.py): who speaks, what the
mixtures hold, and the error when the Debian packages are missing. Needs the packages in
the Makefile's APT_PACKAGES (CI installs them); the cache is built once (~10 s)."""

import numpy as np
import pytest
from avedge.models.corpus import real_eval as R
from avedge.runtime.errors import AvedgeError

PEOPLE = {"pocketsphinx-cards", "pocketsphinx-librivox", "pocketsphinx-dhd", "awb", "rms",
          "slt", "kal", "klettres-en", "klettres-en_GB", "klettres-de", "klettres-fr",
          "klettres-es", "klettres-it"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("real_eval")
    R.speakers(d)  # build once
    return d


def _db(a, b) -> float:
    return 10 * np.log10(np.mean(np.square(a, dtype=np.float64)) /
                         np.mean(np.square(b, dtype=np.float64)))


def _found(rec: np.ndarray, x: np.ndarray, piece: int = 8000) -> float:
    """How well any 0.5 s voiced piece of `rec` appears anywhere in `x`: the largest
    normalised cross-correlation (1: the very samples; another recording of the same
    sustained vowel can reach ~0.85)."""
    c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    local = np.sqrt(c[piece:] - c[:-piece]) + 1e-9  # norm of x[k:k+piece]
    best = 0.0
    for s in range(0, len(rec) - piece + 1, piece // 2):
        p = rec[s: s + piece].astype(np.float64)
        if np.sqrt(np.mean(p ** 2)) < 0.3 * np.sqrt(np.mean(rec ** 2)):
            continue  # silence correlates with nothing
        m = len(x) + piece
        xc = np.fft.irfft(np.fft.rfft(x, m) * np.conj(np.fft.rfft(p, m)), m)[: len(local)]
        best = max(best, float(np.max(np.abs(xc) / (local * np.linalg.norm(p)))))
    return best


def test_speakers_are_the_reserved_people(cache):
    spk = R.speakers(cache)
    assert set(spk) == PEOPLE
    for who, recs in spk.items():
        assert len(recs) >= 2, who  # a target and a different enrollment recording
        assert len({r.name for r in recs}) == len(recs)
        for r in recs:
            assert r.speaker == who and r.audio.dtype == np.float32
            assert r.seconds > 0.8 and np.isfinite(r.audio).all() and np.abs(r.audio).max() > 0.01
    # festival's kal_diphone and cmu_us_slt_arctic_hts are flite's kal and slt: one id each
    for who in ("kal", "slt"):
        assert {r.source for r in spk[who]} == {"flite", "festival"}
    assert {r.language for r in spk["klettres-de"]} == {"de"}
    assert all(len(r.audio) <= 4.0 * 16000 for r in spk["klettres-fr"])  # 2-4 s chains


def test_targets_interferers_and_enrollments(cache, monkeypatch):
    # Clean enrollments (no noise; the draws are otherwise the same) so that a recording
    # found in the enrollment matches sample for sample.
    monkeypatch.setattr(R, "ENROLL_SNR_DB", (300.0, 300.0))
    spk = R.speakers(cache)
    owner = {r.name: r for recs in spk.values() for r in recs}
    exs = R.real_mixtures(n=8, seed=3, cache_dir=cache)
    assert len({e["family"] for e in exs[:3]}) == 3  # spread over the sources at once
    assert len({e["voice"] for e in exs}) == 8 and len({e["language"] for e in exs}) >= 3
    for e in exs:
        assert e["interferers"] and e["voice"] not in e["interferers"]
        assert all(owner[n].speaker == e["interferers"][0] for n in e["interferer_recordings"])
        assert all(owner[n].speaker == e["voice"] for n in e["target_recordings"])
        # the enrollment: other recordings of the same person, at most enroll_seconds
        assert e["enrollment_recordings"]
        assert not set(e["enrollment_recordings"]) & set(e["target_recordings"])
        assert all(owner[n].speaker == e["voice"] for n in e["enrollment_recordings"])
        assert len(e["enrollment"]) >= 1.0 * 16000  # the runtime's minimum enrollment
        # ...and its audio holds the named recordings and none of the target's
        assert max(_found(owner[n].audio, e["enrollment"])
                   for n in e["enrollment_recordings"]) > 0.999
        for n in e["target_recordings"]:
            assert _found(owner[n].audio, e["enrollment"]) < 0.98, n
        for k in ("mixture", "target"):
            assert e[k].dtype == np.float32 and len(e[k]) == 4 * 16000
        assert np.abs(e["mixture"]).max() <= R.PEAK + 1e-6 and e["sample_rate"] == 16000


def test_enrollments_are_cut_to_enroll_seconds(cache):
    short = R.real_mixtures(n=4, seed=3, cache_dir=cache, enroll_seconds=2.0)
    full = R.real_mixtures(n=4, seed=3, cache_dir=cache)  # the default, 5 s
    for s, f in zip(short, full, strict=True):
        assert s["voice"] == f["voice"]  # the same draws up to the enrollment's length
        # 2 s of the same person's other recordings, or all of them when they are shorter
        assert len(s["enrollment"]) == min(2 * 16000, len(f["enrollment"]))
        assert len(s["enrollment"]) >= 1.0 * 16000
    assert any(len(f["enrollment"]) > 2 * 16000 for f in full)  # the cut did something


def test_sir_and_snr_are_as_asked(cache):
    kw = {"n": 4, "seed": 1, "sir_db": -3.0, "snr_db": 7.0, "cache_dir": cache}
    talk = R.real_mixtures(**kw)
    solo = R.real_mixtures(noise_only=True, **kw)
    for a, b in zip(talk, solo):
        assert b["interferers"] == [] and b["sir_db"] is None and a["sir_db"] == -3.0
        noise = b["mixture"] - b["target"]  # noise only: all that is not the target
        assert _db(b["target"], noise) == pytest.approx(7.0, abs=0.05)
        # the same draws: the mixtures differ by the interferer and the peak gain only
        g = np.linalg.norm(a["target"]) / np.linalg.norm(b["target"])
        np.testing.assert_allclose(a["target"], b["target"] * g, atol=1e-6)
        interf = a["mixture"] - a["target"] - noise * g
        assert _db(a["target"], interf) == pytest.approx(-3.0, abs=0.05)
        assert _db(a["target"], noise * g) == pytest.approx(7.0, abs=0.05)


def test_deterministic_given_the_seed(cache):
    a = R.real_mixtures(n=3, seed=5, cache_dir=cache)
    b = R.real_mixtures(n=3, seed=5, cache_dir=cache)
    c = R.real_mixtures(n=3, seed=6, cache_dir=cache)
    for x, y in zip(a, b):
        for k in ("mixture", "target", "enrollment"):
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["mixture"], z["mixture"]) for x, z in zip(a, c))
    np.testing.assert_array_equal(R.real_mixtures(n=2, seed=5, cache_dir=cache)[1]["mixture"],
                                  a[1]["mixture"])  # mixture i does not depend on n


def test_missing_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "POCKETSPHINX_DIR", tmp_path / "no-pocketsphinx")
    monkeypatch.setattr(R, "KLETTRES_DIR", tmp_path / "no-klettres")
    monkeypatch.setattr(R, "FLITE", "no-such-flite-binary")
    monkeypatch.setattr(R, "FESTIVAL_VOICE_DIRS", {"kal": tmp_path / "no-kal",
                                                   "slt": R.FESTIVAL_VOICE_DIRS["slt"]})
    with pytest.raises(AvedgeError, match="apt-get install") as err:
        R.speakers(tmp_path / "cache")
    msg = str(err.value)
    for pkg in ("pocketsphinx-testdata", "flite", "festvox-kallpc16k", "klettres-data"):
        assert pkg in msg
    assert "festvox-us-slt-hts" not in msg
    # Nothing cached by a failed build (the build lock's file is not a cache entry).
    cache = tmp_path / "cache"
    assert not cache.exists() or [p.name for p in cache.iterdir()
                                  if not p.name.endswith(".lock")] == []


def test_bad_arguments(cache):
    with pytest.raises(AvedgeError, match="noise_types"):
        R.real_mixtures(n=1, noise_types=("rain",), cache_dir=cache)
    with pytest.raises(AvedgeError, match="sir_db"):
        R.real_mixtures(n=1, sir_db=(5, -5), cache_dir=cache)
