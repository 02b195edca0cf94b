"""The speech extractor's int8 calibration file: written from the corpus val split,
read back by `Extractor.calibration_pairs` (what static int8 and the NPU export calibrate on)."""

import numpy as np
import torch
from avedge.models.corpus.mixtures import eval_mixtures
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor.train import write_calibration_set

from avedge.cli import main


def test_calibration_file_holds_val_mixtures_the_model_reads_back(bank_dir, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "calib.npz"
    info = write_calibration_set(str(bank_dir), n=2, seconds=1.0, seed=5, out=out)
    assert info["mixtures"] == 2 and info["split"] == "val" and out.stat().st_size > 0
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
    monkeypatch.setattr(se, "CALIB_FILE", out)
    pairs = se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)).calibration_pairs()
    want = eval_mixtures(str(bank_dir), "val", n=2, seconds=1.0, seed=5)
    assert len(pairs) == 2
    for (enroll, mix), ex in zip(pairs, want):
        assert mix.shape == (1, 16000)
        np.testing.assert_allclose(mix[0].numpy(), ex["mixture"], atol=1.0 / 32767)
        ref = se.fit_enrollment(torch.from_numpy(np.asarray(ex["enrollment"], np.float32)))
        torch.testing.assert_close(enroll[0], ref, atol=2.0 / 32767, rtol=0)


def test_cli_writes_the_calibration_set_only_for_a_family_that_has_one(bank_dir, capsys):
    assert main(["train", "speech-extractor-npu", "--corpus", str(bank_dir),
                 "--calibration-set", "2"]) == 2
    assert "--calibration-set does not apply to 'speech-extractor-npu'" in capsys.readouterr().err
    assert main(["train", "speech-extractor", "--corpus", str(bank_dir),
                 "--calibration-set", "0"]) == 2
    assert "a number of mixtures >= 1" in capsys.readouterr().err
