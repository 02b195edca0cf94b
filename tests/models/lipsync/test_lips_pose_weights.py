"""The shipped lips-pose weights: silence closes the mouth and keeps it still, speech
opens it, and the record says how the weights were made."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from avedge.models.corpus.visemes import REST
from avedge.models.lipsync import build, manifest_extra
from avedge.models.lipsync import evaluate as E
from avedge.models.lipsync.pose_flow import HOP_SAMPLES, WEIGHTS_FILE

pytestmark = pytest.mark.skipif(not WEIGHTS_FILE.exists(), reason="no shipped weights")


@pytest.fixture(scope="module")
def sampler():
    torch.set_num_threads(1)
    return build()  # the shipped weights


def test_silence_gives_a_closed_still_rest_mouth(sampler):
    frames = sampler.flow.frames
    pose = E.generate_eager(sampler, E.silence_inputs(frames), seed=3)  # zeros, -60 dBFS
    s = E.silence_stats(pose)
    assert s["jaw_max"] < 0.08  # closed (REST jaw_open is 0.02; speech opens to 0.3-0.85)
    assert s["motion"] < 0.005  # still: under 0.5 % of the range per frame
    assert s["rest_err"] < 0.02
    np.testing.assert_allclose(pose.mean(axis=(0, 1)), REST, atol=0.05)


def test_speech_opens_the_mouth_and_silence_after_it_closes_it(sampler):
    frames = sampler.flow.frames
    rng = np.random.default_rng(0)
    audio = np.zeros(frames * HOP_SAMPLES, np.float32)
    # A vowel-like buzz (a 140 Hz pulse train through formant-ish resonances is overkill
    # here: loud voiced-band noise is enough to be "speech" versus silence) in frames 5..20
    t = np.arange(15 * HOP_SAMPLES) / 16000
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 25))
    audio[5 * HOP_SAMPLES: 20 * HOP_SAMPLES] = 0.1 * buzz + 0.005 * rng.standard_normal(len(t))
    pose = E.generate_eager(sampler, audio[None], seed=0)[0]
    assert pose[8:18, 0].max() > 0.15  # the jaw opens while it sounds
    assert pose[frames - 10:, 0].max() < 0.08  # and is closed again in the silence after


def test_record_and_manifest_describe_the_shipped_weights(sampler):
    rec = json.loads(WEIGHTS_FILE.with_suffix(".json").read_text())
    assert rec["family"] == "lips-pose" and rec["steps"] > 1000
    assert rec["corpus"]["holdout_synth"] == "piper"
    assert manifest_extra()["window_frames"] == sampler.flow.frames == rec["frames"]
