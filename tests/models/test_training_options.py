"""Training options: the moving average of the weights a run writes, bf16 steps."""

from dataclasses import asdict, replace

import pytest
import torch
from avedge.models.common.weight_average import WeightAverage
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from avedge.runtime.errors import AvedgeError
from tone_voices import ToneVoices

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=2, dilation_cycle=2, df_order=2,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


def _cfg(tmp_path, name, **kw):
    return tr.TrainConfig(corpus="unused", out=str(tmp_path / name), batch=3, seconds=1.0,
                          lr=3e-3, warmup=2, eval_every=3, eval_n=4, threads=1,
                          dims=asdict(TINY), holdout_synth=None, ema=0.9, **kw)


def _train(cfg):
    return tr.train(cfg, data=ToneVoices(), progress=False, log=lambda *a: None)


def test_average_follows_the_weights_and_forgets_the_start_early():
    model = se.build(TINY)
    avg = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.speaker_encoder.parameters()):
            p.add_(1.0)
    avg.update(model, step=0)  # decay ramps from 0.1: the start is mostly forgotten
    moved = model.in_proj.bias - avg.model.in_proj.bias
    torch.testing.assert_close(moved, torch.full_like(moved, 0.1))
    avg.update(model, step=10**6)  # then the plain decay
    moved2 = model.in_proj.bias - avg.model.in_proj.bias
    torch.testing.assert_close(moved2, 0.99 * moved)
    for cur, av in zip(model.speaker_encoder.parameters(),
                       avg.model.speaker_encoder.parameters()):  # the encoder is averaged too
        torch.testing.assert_close((cur - av).detach(), torch.full_like(av, 0.1 * 0.99))
    assert all(not p.requires_grad for p in avg.model.parameters())


def test_run_writes_the_average_keeps_it_across_resume_and_scores_both(tmp_path):
    cfg = _cfg(tmp_path, "w.safetensors", steps=6)
    rec = _train(cfg)
    ck = torch.load(tmp_path / "w.ckpt.pt", weights_only=False)
    shipped = se.load_weights(cfg.out).state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in ck["ema"]["model"].items())
    assert any(not torch.equal(shipped[k], v) for k, v in ck["model"].items())
    assert all("val_ema" in h and "val" in h for h in rec["history"])
    # 3 + 3 steps with a resume between = 6 straight: the average survives the resume.
    half = replace(cfg, out=str(tmp_path / "r.safetensors"), steps=3)
    _train(half)
    _train(replace(half, steps=6))
    resumed = se.load_weights(half.out).state_dict()
    for k, v in shipped.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=1e-6, msg=k)


def test_no_average_writes_the_last_step(tmp_path):
    cfg = replace(_cfg(tmp_path, "w.safetensors", steps=3), ema=0.0)
    rec = _train(cfg)
    ck = torch.load(tmp_path / "w.ckpt.pt", weights_only=False)
    shipped = se.load_weights(cfg.out).state_dict()
    assert ck["ema"] is None and all(torch.equal(shipped[k], v) for k, v in ck["model"].items())
    assert all("val_ema" not in h for h in rec["history"])


def test_a_decay_that_is_no_average_is_refused_before_the_corpus_is_read(tmp_path, capsys):
    from avedge.cli import main

    with pytest.raises(AvedgeError, match=r"--ema must be in \[0, 1\)"):
        WeightAverage(se.build(TINY), decay=1.0)
    assert main(["train", "speech-extractor", "--ema", "1.5", "--corpus",
                 str(tmp_path / "no-bank"), "--out", str(tmp_path / "w.safetensors"),
                 "--no-progress"]) != 0
    assert "--ema must be in [0, 1)" in capsys.readouterr().err


def test_bf16_steps_train_the_same_model_in_other_arithmetic(tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = replace(_cfg(tmp_path, f"{precision}.safetensors", steps=3), ema=0.0,
                      precision=precision)
        rec = _train(cfg)
        assert rec["config"]["precision"] == precision
        runs[precision] = se.load_weights(cfg.out).state_dict()
    gaps = [float((runs["bf16"][k] - v).abs().max()) for k, v in runs["fp32"].items()]
    assert max(gaps) > 0  # the autocast is really on
    assert max(gaps) < 0.05  # and it is the same training: 3 Adam steps of lr 3e-3 apart
    with pytest.raises(AvedgeError, match="--precision 'fp16'.*accepted: fp32, bf16"):
        _train(replace(_cfg(tmp_path, "x.safetensors", steps=1), precision="fp16"))


def test_paired_comparison_of_two_weights_files_on_the_same_mixtures():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "compare_extractor_weights.py"
    spec = importlib.util.spec_from_file_location("compare_extractor_weights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    a, b = se.build(TINY), se.build(TINY)
    with torch.no_grad():
        b.out_proj.bias.add_(0.3)  # another function of the same inputs
    sets = {"tones": ToneVoices().eval_set("test", 6)}
    same = mod.compare(a, a, sets)["tones"]
    assert same["b_minus_a_db"] == 0 and same["b_minus_a_se_db"] == 0 and same["n"] == 6
    other = mod.compare(a, b, sets)["tones"]
    assert other["b_minus_a_db"] == pytest.approx(
        other["b_si_sdri_db"] - other["a_si_sdri_db"], abs=2e-3)
    assert other["b_minus_a_db"] != 0 and other["b_minus_a_se_db"] > 0


def test_without_a_checkpoint_a_run_warm_starts_from_its_own_weights(tmp_path):
    cfg = _cfg(tmp_path, "w.safetensors", steps=3)
    _train(cfg)
    (tmp_path / "w.ckpt.pt").unlink()  # checkpoints stay on the machine that wrote them
    before = se.load_weights(cfg.out).state_dict()
    rec = _train(replace(cfg, steps=0))  # no step: what it writes is where it started
    assert rec["warm_start"] == {"from": "w.safetensors", "steps": 3,
                                 "train_minutes": rec["warm_start"]["train_minutes"]}
    assert rec["config"]["init"] == cfg.out and rec["steps"] == 0
    assert tr.phase_at(tr.TrainConfig(**rec["config"]), 0) == len(tr.CURRICULUM) - 1
    after = se.load_weights(cfg.out).state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    (tmp_path / "w.ckpt.pt").unlink()
    fresh = tr.train(replace(cfg, steps=0), data=ToneVoices(), fresh=True, progress=False,
                     log=lambda *a: None)
    assert "warm_start" not in fresh  # --fresh: from scratch, not from OUT
    assert any(not torch.equal(v, before[k])
               for k, v in se.load_weights(cfg.out).state_dict().items())


def test_shared_loop_stops_on_sigterm_and_saves(tmp_path):
    import os
    import signal

    from avedge.models.common import trainer

    saved, state = [], trainer.new_state()

    class Batches:
        def next(self):
            return None

        def close(self):
            saved.append("closed")

    def step(k, batch):
        if k == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop finishes this step, then saves
        return 1.0, {}

    before = signal.getsignal(signal.SIGTERM)
    trainer.run_loop(state, trainer.LoopSettings(steps=10, minutes=None, checkpoint_minutes=60,
                                                 eval_every=100),
                     batches=Batches(), step=step, evaluate=lambda k: None,
                     save=lambda: saved.append(state["step"]), progress=False)
    assert state["step"] == 3 and saved == ["closed", 3] and state["sessions"] == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is given back


def test_average_of_a_model_without_a_companion():
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(2.0)
    avg.update(model, step=10**6)
    torch.testing.assert_close(model.weight - avg.model.weight,
                               torch.ones_like(model.weight))
    assert set(avg.state_dict()) == {"model"}
    WeightAverage(model, 0.5).load_state_dict(avg.state_dict())
