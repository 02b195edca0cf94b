"""Fitting the speech extractor to an NPU: MLP pruning + quantization-aware fine-tuning
(models/speech_extractor/train_npu.py), on a tiny model and stand-in data."""

import json
import math

import pytest
import torch
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import npu
from avedge.models.speech_extractor import train_npu as tn
from avedge.runtime.errors import AvedgeError
from avedge.targets.arm.lower import arm_toolchain_missing
from tone_voices import ToneVoices

MISSING = arm_toolchain_missing()
needs_arm = pytest.mark.skipif(MISSING is not None, reason=f"Ethos-U toolchain: {MISSING}")

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=3, df_order=1,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


def tiny_model():
    torch.manual_seed(0)
    m = se.Extractor(TINY).eval()
    torch.nn.init.normal_(m.film.weight, std=0.3)
    return m


def test_pruned_model_keeps_the_function_shape_and_width():
    m = tiny_model()
    p = tn.pruned(m, 8)
    assert p.dims.d_hidden == 8 and all(b.fc1.out_features == 8 for b in p.blocks)
    assert tn.pruned(m, 0).dims.d_hidden == 32  # 0 keeps the width
    x = torch.randn(1, 4 * se.CHUNK) * 0.1
    emb = m.speaker_encoder(torch.randn(1, se.ENROLL_SAMPLES) * 0.1)
    assert se.extract(p, x, emb).shape == x.shape
    torch.testing.assert_close(p.in_proj.weight, m.in_proj.weight)  # only the MLPs change


@pytest.mark.parametrize("log_ranges", [1, 4])
def test_npu_form_weights_go_back_into_the_plain_extractor_exactly(log_ranges):
    m = tiny_model()
    # log 16 and the ranged log's constant are folded into in_proj's bias
    ring = npu.RingExtractor(m, power_scale=16.0, log_ranges=log_ranges)
    with torch.no_grad():
        ring.blocks[1].fc2.weight += 0.5  # "trained"
    back = se.Extractor(TINY)
    back.load_state_dict(m.state_dict())
    tn.ring_into(ring, back)
    torch.testing.assert_close(back.in_proj.bias, m.in_proj.bias, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.blocks[1].fc2.weight, m.blocks[1].fc2.weight + 0.5)


@needs_arm
def test_qat_fine_tuning_trains_resumes_and_writes_plain_weights(tmp_path):
    init = tmp_path / "init.safetensors"
    se.save_weights(tiny_model(), init)
    out = tmp_path / "npu.safetensors"
    cfg = tn.TrainConfig(corpus="unused", out=str(out), init=str(init), mlp_width=16,
                         steps=4, batch=2, seconds=0.5, lr=1e-3, warmup=1, eval_every=2,
                         eval_n=4, threads=1, holdout_synth=None)
    data = ToneVoices()
    rec = tn.train(cfg, data=data, progress=False, log=lambda *a: None)
    assert rec["steps"] == 4 and rec["scheme"] == "a8w8-log16"
    assert [h["step"] for h in rec["history"]] == [2, 4]
    for h in rec["history"]:
        assert math.isfinite(h["val"]["qat_si_sdri_db"])
        assert math.isfinite(h["val"]["float_si_sdri_db"])
    tuned = se.load_weights(out)
    assert tuned.dims.d_hidden == 16
    assert tuned.npu_log_ranges == 1  # the log form it was tuned in, for the export
    start = tn.pruned(se.load_weights(init), 16)
    assert not torch.equal(tuned.blocks[0].fc1.weight, start.blocks[0].fc1.weight)
    # The speaker side is not trained: it runs in fp32 on the phone.
    torch.testing.assert_close(tuned.film.weight, start.film.weight)
    rec2 = tn.train(tn.TrainConfig(**{**cfg.__dict__, "steps": 6}), data=data,
                    progress=False, log=lambda *a: None)
    assert rec2["steps"] == 6 and rec2["sessions"] == 2
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 6
    with pytest.raises(AvedgeError, match="another init/width"):
        tn.train(tn.TrainConfig(**{**cfg.__dict__, "mlp_width": 8}), data=data,
                 progress=False, log=lambda *a: None)
    with pytest.raises(AvedgeError, match="log form"):
        tn.train(tn.TrainConfig(**{**cfg.__dict__, "log_ranges": 4}), data=data,
                 progress=False, log=lambda *a: None)


def test_a_target_without_an_npu_is_refused_before_the_corpus_is_read(tmp_path):
    cfg = tn.TrainConfig(corpus=str(tmp_path / "no-bank"), out=str(tmp_path / "x.safetensors"),
                         target="hearable")
    with pytest.raises(AvedgeError, match="'hearable' has no NPU"):
        tn.train(cfg, progress=False, log=lambda *a: None)


def test_record_keeps_the_npu_score_only_while_it_describes_the_weights(tmp_path):
    rec = tmp_path / "npu.json"
    assert tn._npu_eval_of(rec, 5) == {}  # no record yet
    rec.write_text(json.dumps({"steps": 5, "eval_npu": {"steps": 5, "delta_db": -0.06}}))
    assert tn._npu_eval_of(rec, 5) == {"eval_npu": {"steps": 5, "delta_db": -0.06}}
    assert tn._npu_eval_of(rec, 6) == {}  # trained further: the score is stale


def test_no_log_table_is_refused_before_the_corpus_is_read(tmp_path):
    cfg = tn.TrainConfig(corpus=str(tmp_path / "no-bank"), out=str(tmp_path / "o" / "x.safetensors"),
                         log_ranges=0)
    with pytest.raises(AvedgeError, match="--log-ranges wants the number of int16 log tables"):
        tn.train(cfg, progress=False, log=lambda *a: None)
    assert not (tmp_path / "o").exists()


def test_tuned_weights_of_another_width_or_log_form_are_refused_as_a_start(tmp_path):
    tuned = tmp_path / "npu.safetensors"
    se.save_weights(tn.pruned(tiny_model(), 16), tuned, meta={"npu_log_ranges": 1})
    cfg = tn.TrainConfig(out=str(tuned), mlp_width=16)
    assert tn.tuned_start(tuned, cfg, tiny_model()).dims.d_hidden == 16
    with pytest.raises(AvedgeError, match="tuned at MLP width 16 .* asks 8"):
        tn.tuned_start(tuned, tn.TrainConfig(out=str(tuned), mlp_width=8), tiny_model())
    with pytest.raises(AvedgeError, match="1 log table.*asks 16 and 4"):
        tn.tuned_start(tuned, tn.TrainConfig(out=str(tuned), mlp_width=16, log_ranges=4),
                       tiny_model())
