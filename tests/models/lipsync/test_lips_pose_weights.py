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


def test_speech_opens_the_mouth_and_silence_after_it_closes_it(sampler, val_bank):
    """Unseen voices (val split): the end of an utterance and the second of silence after
    it; the mouth follows the ground truth, then closes."""
    from avedge.models.corpus.voicebank import open_bank
    from avedge.models.lipsync import data as D

    frames = sampler.flow.frames
    split = D.open_split(open_bank(val_bank), "val", "piper")
    for i in range(len(split)):
        tl, phones, _ = D.timeline(split, i, None)  # 1 s silence, the utterance, 1 s silence
        audio, gt = D.cut(tl, phones, len(tl) // HOP_SAMPLES - frames, frames)
        pose = E.generate_eager(sampler, audio[None], seed=i)[0]
        assert pose[:, 0].max() > 0.15  # the jaw opens while it speaks
        assert pose[-10:, 0].max() < 0.08  # and is closed in the silence after
        assert E.pose_errors(pose, gt)["mae"] < 0.05


def test_record_and_manifest_describe_the_shipped_weights(sampler):
    rec = json.loads(WEIGHTS_FILE.with_suffix(".json").read_text())
    assert rec["family"] == "lips-pose" and rec["steps"] > 1000
    assert rec["corpus"]["holdout_synth"] == "piper"
    assert manifest_extra()["window_frames"] == sampler.flow.frames == rec["frames"]
