import hashlib
import json

import numpy as np
import pytest
from avedge.models.corpus import visemes, voicebank, writer
from avedge.models.corpus.check import check_corpus
from avedge.models.corpus.voices import split_of
from avedge.runtime.errors import AvedgeError

from avedge.cli import main as cli


def _lagged_corr(a, b, lag):
    a, b = (a - a.mean()) / (a.std() + 1e-9), (b - b.mean()) / (b.std() + 1e-9)
    if lag >= 0:
        return float(np.mean(a[lag:] * b[: len(b) - lag]))
    return float(np.mean(a[:lag] * b[-lag:]))


LAGS = np.arange(-4, 5)


def test_audio_envelope_and_mouth_opening_peak_within_one_frame(bank_dir):
    # One short utterance gives a flat correlation curve, so its argmax is noisy; the
    # sync claim is checked on each synthesizer's mean curve, and on most utterances.
    bank = voicebank.open_bank(bank_dir)
    curves: dict[str, list] = {}
    for u in bank.utts:
        x = bank.audio(u)
        F = writer.n_frames(len(x))
        jaw = visemes.lips_pose(u.phones, F)[:, 0]
        env = np.sqrt(np.add.reduceat(x**2, np.arange(0, len(x), writer.HOP)) / writer.HOP)
        curves.setdefault(u.voice.partition(":")[0], []).append(
            [_lagged_corr(jaw, env[:F], lag) for lag in LAGS])
    assert set(curves) == {"piper", "kokoro", "espeak"}
    for synth, cs in curves.items():
        mean = np.mean(cs, axis=0)
        assert abs(LAGS[np.argmax(mean)]) <= 1, (synth, mean.round(3))
        assert mean.max() > 0.1  # positively related (fricatives are loud with a shut jaw)
    per_utt = [abs(LAGS[np.argmax(c)]) <= 1 for cs in curves.values() for c in cs]
    assert np.mean(per_utt) >= 0.75, per_utt


def test_bilabials_close_the_lips():
    phones = [["a", 0.0, 0.15], ["m", 0.15, 0.25], ["a", 0.25, 0.4]]
    pose = visemes.lips_pose(phones, 10)

    def frame_at(t):  # the frame showing the mouth for sound at time t (the pose leads)
        return round((t - visemes.ANTICIPATION_S) * visemes.FPS - 0.5)

    m, a = frame_at(0.2), frame_at(0.075)  # centres of /m/ and of the first /a/
    assert pose[m, visemes.DIMS.index("lip_closure")] > 0.8
    assert pose[a, 0] > 2 * pose[m, 0]  # the jaw is open on /a/, half shut on /m/


def test_same_seed_same_bytes_and_check_passes(bank_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        writer.write_corpus(d, 2, seed=3, split="val", bank_dir=bank_dir)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7  # manifest + 2 x (wav, npz, json)
    for f in files:
        assert hashlib.sha256((a / f).read_bytes()).digest() == \
            hashlib.sha256((b / f).read_bytes()).digest(), f
    problems, summary = check_corpus(a)
    assert problems == [] and summary["utterances"] == 2
    man = json.loads((a / "manifest.json").read_text())
    for uid in man["utterances"]:
        meta = json.loads((a / "val" / f"{uid}.json").read_text())
        assert split_of(meta["voice"]) == "val" and meta["voice"] in man["splits"]["val"]["voices"]
        assert not set(man["splits"]["val"]["voices"]) & set(man["splits"]["train"]["voices"])
        with np.load(a / "val" / f"{uid}.npz") as z:
            assert z["roi"].shape == (meta["n_frames"], 88, 88) and z["roi"].dtype == np.uint8


def test_check_catches_a_deleted_file_and_misaligned_lengths(bank_dir, tmp_path, capsys):
    writer.write_corpus(tmp_path, 2, seed=0, split="test", bank_dir=bank_dir)
    uids = json.loads((tmp_path / "manifest.json").read_text())["utterances"]
    assert cli(["corpus", "--check", str(tmp_path)]) == 0
    (tmp_path / "test" / f"{uids[0]}.wav").unlink()
    npz = tmp_path / "test" / f"{uids[1]}.npz"
    with np.load(npz) as z:
        roi, pose = z["roi"], z["lips_pose"]
    writer.save_npz(npz, roi=roi[:-3], lips_pose=pose)  # 3 frames short of the audio
    assert cli(["corpus", "--check", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert f"missing {uids[0]}.wav" in out.out
    assert "roi has" in out.out and "lips_pose has" not in out.out
    assert "2 problem(s)" in out.err


def test_cli_writes_a_corpus_with_video(bank_dir, tmp_path):
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    assert cli(["corpus", "--out", str(tmp_path), "--n", "1", "--split", "train", "--bank",
                str(bank_dir), "--video", "-q"]) == 0
    mp4 = next((tmp_path / "train").glob("*.mp4"))
    assert mp4.stat().st_size > 10_000
    assert check_corpus(tmp_path)[0] == []


def test_unknown_split_is_a_one_line_error(bank_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["corpus", "--out", str(tmp_path), "--split", "dev"])
    assert cli(["corpus", "--check", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_kind_grid_writes_only_grammar_sentences(bank_dir, tmp_path):
    from avedge.models.corpus.text import GRID_SLOTS
    from avedge.models.lipreader.tokenizer import normalize

    writer.write_corpus(tmp_path, 3, seed=1, split="test", bank_dir=bank_dir, kind="grid")
    slots = [{normalize(w) for w in slot} for slot in GRID_SLOTS]
    for meta in (tmp_path / "test").glob("*.json"):
        words = normalize(json.loads(meta.read_text())["text"]).split()
        assert len(words) == 6 and all(w in s for w, s in zip(words, slots, strict=True))
    with pytest.raises(AvedgeError, match="unknown sentence kind 'poem'; available: grid, free"):
        writer.write_corpus(tmp_path, 1, split="test", bank_dir=bank_dir, kind="poem")
