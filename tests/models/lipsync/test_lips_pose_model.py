"""lips-pose: the network's shapes and time alignment, the unrolled sampler against a hand
loop of reference flow_step updates, the avedge ops in the exported graph, and the
artifact's parity on both CPU backends (tiny dims)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from avedge.cpp_kernels import reference as kref
from avedge.models.lipsync import example_inputs, manifest_extra
from avedge.models.lipsync import pose_flow as pf
from avedge.models.lipsync.sampler import PoseSampler

TINY = pf.Dims(n_mels=16, d_model=16, heads=2, ffn=16, layers=1)
FRAMES = 12


def tiny_flow(seed: int = 0) -> pf.PoseFlow:
    torch.manual_seed(seed)
    flow = pf.PoseFlow(TINY, FRAMES)
    with torch.no_grad():  # the head starts at zero (v = 0): give it weights to test with
        flow.head.weight.normal_(0, 0.3)
        for blk in flow.blocks:
            blk.ada.weight.normal_(0, 0.1)
    return flow.eval()


def inputs(frames: int = FRAMES, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(1, frames * pf.HOP_SAMPLES, generator=g),
            torch.randn(1, frames, pf.POSE_DIMS, generator=g))


def test_shapes_and_range():
    flow = tiny_flow()
    audio, noise = inputs()
    a = flow.encode_audio(audio)
    assert a.shape == (1, 2 * FRAMES, TINY.d_model)  # audio tokens at 50 Hz
    v = flow.velocity(a, noise, torch.tensor([0.3]))
    assert v.shape == (1, FRAMES, pf.POSE_DIMS)
    pose = PoseSampler(flow)(audio, noise)
    assert pose.shape == (1, FRAMES, pf.POSE_DIMS)
    assert float(pose.min()) >= 0.0 and float(pose.max()) <= 1.0


def test_streams_share_one_clock():
    """Audio tokens 2i and 2i+1 straddle motion frame i's centre; equal times, equal phase."""
    pos_a, pos_m = pf.stream_positions(FRAMES)
    np.testing.assert_allclose(0.5 * (pos_a[0::2] + pos_a[1::2]), pos_m)
    cos_a, sin_a = pf.rope_tables(torch.tensor([3.0]), 8, 100.0)
    cos_m, sin_m = pf.rope_tables(pos_m[2:3] + 0.5, 8, 100.0)  # frame 2's centre is 2.5
    assert float(pos_m[2]) == 2.5 and float(pos_a[5]) == 2.75
    np.testing.assert_allclose(cos_a, cos_m)
    np.testing.assert_allclose(sin_a, sin_m)


def test_op_and_reference_attention_agree():
    flow = tiny_flow()
    audio, noise = inputs()
    with torch.no_grad():
        want = PoseSampler(flow)(audio, noise)
        flow.use_op = False  # what training runs
        got = PoseSampler(flow)(audio, noise)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method,guidance", [("euler", 1.0), ("heun", 1.0), ("euler", 2.0)])
def test_sampler_is_a_loop_of_reference_flow_steps(method, guidance):
    flow = tiny_flow()
    audio, noise = inputs()
    steps = 3
    with torch.no_grad():
        got = PoseSampler(flow, steps, method, guidance)(audio, noise)
        a_c = flow.encode_audio(audio)
        a_u = flow.encode_audio(audio, torch.zeros(1))

        def vel(x, t):
            tt = torch.tensor([t])
            v_c = flow.velocity(a_c, x, tt)
            return v_c, (None if guidance == 1.0 else flow.velocity(a_u, x, tt))

        x, dt = noise, 1.0 / steps
        for i in range(steps):
            v_c, v_u = vel(x, i * dt)
            x_p = kref.flow_step(x, v_c, v_u, None, dt, guidance)
            if method == "heun":
                v_c, v_u = vel(x_p, (i + 1) * dt)
                x_p = kref.flow_step(x, v_c, v_u, x_p, dt, guidance)
            x = x_p
    torch.testing.assert_close(got, pf.to_pose(x), atol=1e-5, rtol=1e-5)
    if guidance != 1.0:  # guidance really changes the result
        plain = PoseSampler(flow, steps, method, 1.0)(audio, noise)
        assert float((plain - got).abs().max()) > 1e-3


def test_graph_holds_the_ops_and_every_step():
    from avedge.targets.export import find_custom_ops

    sampler = PoseSampler(tiny_flow(), steps=4)
    ex = inputs()
    assert find_custom_ops(sampler, ex) == ["avedge::flow_step", "avedge::joint_attention"]
    graph = torch.export.export(sampler, ex).graph
    names = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    assert sum("flow_step" in n for n in names) == 4  # unrolled: one update per step
    assert sum("joint_attention" in n for n in names) == 4 * TINY.layers


def test_cpu_artifact_matches_eager_on_both_backends(tmp_path):
    from avedge.runtime import load
    from avedge.targets import get_target

    sampler = PoseSampler(tiny_flow())
    art = get_target("cpu").export(sampler, example_inputs(sampler), tmp_path / "art")
    assert art.manifest["custom_ops"] == ["avedge::flow_step", "avedge::joint_attention"]
    audio, noise = inputs(seed=5)
    with torch.no_grad():
        want = sampler(audio, noise).numpy()
    assert 0.05 < float(want.std())  # not a constant output
    for backend in ("onnxruntime", "executorch"):
        got = load(tmp_path / "art", backend=backend).run_ordered([audio.numpy(), noise.numpy()])
        np.testing.assert_allclose(got[0], want, atol=1e-4, err_msg=backend)


def test_manifest_extra_is_the_agreed_interface():
    extra = manifest_extra()
    assert set(extra) == {"task", "fps", "sample_rate", "hop_samples", "window_frames",
                          "pose_dims", "rest_pose", "steps", "method", "guidance",
                          "lookahead_frames"}
    assert extra["task"] == "lips-pose" and extra["hop_samples"] * extra["fps"] == 16000
    assert len(extra["pose_dims"]) == len(extra["rest_pose"]) == 12
    assert extra["method"] in ("euler", "heun") and 0 < extra["lookahead_frames"] < \
        extra["window_frames"] // 2
    json.dumps(extra)


def test_weights_round_trip(tmp_path):
    flow = tiny_flow()
    pf.save_weights(flow, tmp_path / "w.safetensors")
    back = pf.load_weights(tmp_path / "w.safetensors")
    assert back.dims == TINY and back.frames == FRAMES
    audio, noise = inputs()
    with torch.no_grad():
        torch.testing.assert_close(PoseSampler(back)(audio, noise), PoseSampler(flow)(audio, noise))
