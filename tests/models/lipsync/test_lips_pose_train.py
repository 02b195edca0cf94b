"""lips-pose training windows, trainer (runs, resumes) and the evaluation metrics."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from avedge.models.corpus import voicebank
from avedge.models.corpus.visemes import REST
from avedge.models.corpus.voices import small_bank_voices
from avedge.models.lipsync import data as D
from avedge.models.lipsync import evaluate as E
from avedge.models.lipsync import pose_flow as pf
from avedge.models.lipsync import train as T

TINY = {"n_mels": 16, "d_model": 16, "heads": 2, "ffn": 16, "layers": 1}
VOICES = small_bank_voices({"train": 2, "val": 1})


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    d = tmp_path_factory.mktemp("lipsyncbank")
    voicebank.build_bank(d, voices=VOICES, n_per_voice={"espeak": 2}, seed=0)
    return d


@pytest.fixture(scope="module")
def train_split(bank):
    return D.open_split(voicebank.open_bank(bank), "train", "piper")


def test_windows_pair_audio_with_its_poses(train_split):
    w = D.sample(train_split, 0, None, 40)  # evaluation window: 0.4 s silence, then speech
    assert w["audio"].shape == (40 * 640,) and w["pose"].shape == (40, 12)
    env = E.energy_envelope(w["audio"], 40)
    assert env[:8].max() < -80  # exact silence before the speech...
    np.testing.assert_allclose(w["pose"][:3], np.tile(REST, (3, 1)), atol=0.02)  # ...is REST
    assert w["pose"][10:, 0].max() > 0.3  # the jaw opens once the speech starts


def test_batches_are_a_function_of_the_step(train_split):
    cfg = T.TrainConfig(batch=3, frames=16)
    a = T.make_batch(cfg, train_split, 7)
    b = T.make_batch(cfg, train_split, 7)
    c = T.make_batch(cfg, train_split, 8)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert not torch.equal(a[0], c[0])
    audio, pose, cond, x0, t = a
    assert audio.shape == (3, 16 * 640) and pose.shape == x0.shape == (3, 16, 12)
    assert float(audio.abs().max()) <= 1.0 and 0 <= float(pose.min()) <= float(pose.max()) <= 1
    assert set(cond.tolist()) <= {0.0, 1.0} and 0 <= float(t.min()) <= float(t.max()) <= 1


def test_training_writes_weights_and_record_and_resumes(bank, tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = T.TrainConfig(corpus=str(bank), out=str(out), steps=3, batch=2, warmup=1,
                        eval_every=2, eval_n=2, threads=1, dims=dict(TINY), frames=16)
    logs = []
    rec = T.train(cfg, progress=False, log=logs.append)
    assert rec["steps"] == 3 and out.is_file() and out.with_suffix(".ckpt.pt").is_file()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["steps"] == 3 and saved["corpus"]["holdout_synth"] == "piper"
    assert [h["step"] for h in saved["history"]] == [2, 3]
    val = saved["history"][0]["val_ema"]
    assert {"mae", "rmse", "sync_offset", "sync_offset_gt", "silence"} <= set(val)
    model = pf.load_weights(out)
    assert asdict(model.dims) == asdict(pf.Dims.from_json(TINY)) and model.frames == 16

    rec = T.train(T.TrainConfig(**{**cfg.__dict__, "steps": 5}), progress=False,
                  log=logs.append)
    assert rec["steps"] == 5 and rec["sessions"] == 2
    assert any("resuming" in m and "step 3" in m for m in logs)
    res = T.final_eval(cfg, n=2)
    assert res["val"]["n"] == 2 and "mae" in res["val"]
    assert json.loads(out.with_suffix(".json").read_text())["eval"]["val"] == res["val"]


def test_flow_loss_falls_on_a_repeated_batch(train_split):
    torch.manual_seed(0)
    model = pf.PoseFlow(pf.Dims.from_json(TINY), 16)
    model.use_op = False
    batch = T.make_batch(T.TrainConfig(batch=4, frames=16), train_split, 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss, _ = T.flow_loss(model, batch, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


# ----------------------------------------------------------------------------- metrics

def _speechlike(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Audio with random syllable bursts and a jaw that follows its energy exactly."""
    rng = np.random.default_rng(seed)
    gate = np.repeat(rng.random(frames // 3 + 1) > 0.4, 3)[:frames].astype(float)
    gate = np.convolve(gate, [0.25, 0.5, 0.25], "same")
    audio = (np.repeat(gate, 640) * rng.standard_normal(frames * 640) * 0.1).astype(np.float32)
    return audio, gate


@pytest.mark.parametrize("shift", [-2, 0, 1, 3])
def test_sync_offset_finds_a_known_shift(shift):
    envs, jaws = [], []
    for s in range(6):
        audio, gate = _speechlike(80, s)
        envs.append(E.energy_envelope(audio, 80))
        jaws.append(np.roll(gate, shift))  # > 0: the jaw trails the audio
    assert E.sync_offset(envs, jaws) == pytest.approx(shift, abs=0.3)


def test_pose_errors_and_silence_stats():
    gt = np.tile(REST, (10, 1))
    err = E.pose_errors(gt + 0.1, gt)
    assert err["mae"] == pytest.approx(0.1) and err["rmse"] == pytest.approx(0.1)
    still = E.silence_stats(np.tile(REST, (2, 10, 1)))
    assert still["motion"] == 0.0 and still["rest_err"] < 1e-7
    assert still["jaw_mean"] == pytest.approx(REST[0])
    moving = np.tile(REST, (10, 1))
    moving[::2, 0] = 0.6
    s = E.silence_stats(moving)
    assert s["jaw_max"] == pytest.approx(0.6) and s["motion"] > 0.03


def test_edge_lookahead_counts_the_unreliable_right_edge_frames():
    err = np.full(40, 0.02)
    err[:2] = 0.05  # the left edge does not count
    err[-4:] = [0.039, 0.045, 0.06, 0.08]
    assert E.edge_lookahead(err) == (pytest.approx(0.02), 3)
    assert E.edge_lookahead(np.full(40, 0.02))[1] == 0


def test_edge_profile_runs_on_bank_windows(train_split):
    def generate(audio):  # a "model" that always answers REST
        return np.tile(REST, (len(audio), 16, 1))

    r = E.edge_profile(generate, train_split, 2, 16, per_utt=2)
    assert r["windows"] == 4 and len(r["mae_by_position"]) == 16
    assert 0 <= r["lookahead"] <= 8 and r["middle"] > 0


def test_draw_gives_a_rare_synthesizer_its_minimum_share():
    from types import SimpleNamespace

    utts = [SimpleNamespace(synth="espeak")] * 97 + [SimpleNamespace(synth="kokoro")] * 3
    sp = D.Split(bank=None, utts=utts, name="train")
    rng = np.random.default_rng(0)
    idx = sp.draw(rng, 4000, min_share=0.25)
    share = np.mean([utts[i].synth == "kokoro" for i in idx])
    assert 0.17 < share < 0.24  # 0.25 / (0.97 + 0.25) = 0.205 after renormalising
    by_count = np.mean([utts[i].synth == "kokoro" for i in sp.draw(rng, 4000)])
    assert by_count < 0.06
