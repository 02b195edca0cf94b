"""A model using the avedge ops exports to ONNX through onnx_translation_table() (standard
ops only) and runs in onnxruntime with the reference's results."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from kernel_model import KernelBlock, example_inputs

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_model(ck, tmp_path_factory):
    torch.manual_seed(0)
    model = KernelBlock().eval()
    path = tmp_path_factory.mktemp("onnx") / "kernels.onnx"
    program = torch.onnx.export(model, example_inputs(), dynamo=True,
                                custom_translation_table=ck.onnx_translation_table())
    program.save(str(path))
    return model, path


def test_only_standard_onnx_ops(onnx_model):
    _, path = onnx_model
    graph = onnx.load(str(path))
    domains = {n.domain for n in graph.graph.node} | {f.domain for f in graph.functions}
    assert domains <= {"", "ai.onnx"}, domains
    assert not any("avedge" in n.op_type for n in graph.graph.node)


def test_onnxruntime_matches_eager(onnx_model):
    model, path = onnx_model
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for seed in (0, 3):
        inputs = example_inputs(seed)
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
        with torch.no_grad():
            want = model(*inputs)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("window", [0.0, 1e6])
def test_joint_attention_window_edges(ck, tmp_path, window):
    """Window 0 and a window beyond the sequence, unsorted int positions, length-1 stream."""
    class JA(torch.nn.Module):
        def forward(self, q_a, q_m, pos_a, pos_m):
            return torch.ops.avedge.joint_attention(q_a, q_a, q_a, q_m, q_m, q_m, pos_a, pos_m,
                                                    window, 0.5)

    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 2, 7, 8, generator=g), torch.randn(1, 2, 1, 8, generator=g),
            torch.tensor([3, 0, 1, 2, 5, 4, 6]), torch.tensor([2]))
    path = tmp_path / "ja.onnx"
    torch.onnx.export(JA().eval(), args, dynamo=True,
                      custom_translation_table=ck.onnx_translation_table()).save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), args)})
    want = ck.reference.joint_attention(args[0], args[0], args[0], args[1], args[1], args[1],
                                        args[2], args[3], window, 0.5)
    for gt, w in zip(got, want):
        np.testing.assert_allclose(gt, w.numpy(), atol=1e-5, rtol=1e-5)
