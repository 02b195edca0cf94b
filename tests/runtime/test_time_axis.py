"""A stream advances along each streamed tensor's time axis, not always the last one."""

import numpy as np
import pytest
import torch
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError, InputError


class PoseSmoother(torch.nn.Module):
    """Poses (1, T, 3) in, channels-first (1, 3, T) out: y[t] = mix(x[t]) + x[t-1] / 2.

    The previous chunk's last frame is the state. Time is axis 1 of the input and axis 2
    of the output, so a stream that split along the last axis would mix up channels."""

    chunk_samples = 16
    input_names = ("poses", "last")
    output_names = ("smoothed", "new_last")

    def __init__(self):
        super().__init__()
        self.time_axes = {"poses": 1, "smoothed": -1}
        torch.manual_seed(0)
        self.mix = torch.nn.Linear(3, 3)

    def forward(self, poses, last):  # (1, 16, 3), (1, 1, 3)
        prev = torch.cat([last, poses[:, :-1]], dim=1)
        return (self.mix(poses) + 0.5 * prev).transpose(1, 2), poses[:, -1:]


@pytest.fixture(scope="module")
def pose_artifact(tmp_path_factory):
    from avedge.targets import get_target

    model = PoseSmoother().eval()
    example = (torch.zeros(1, 16, 3), torch.zeros(1, 1, 3))
    art = get_target("cpu").export(model, example, tmp_path_factory.mktemp("pose") / "art")
    return model, art


def test_manifest_records_each_tensors_time_axis(pose_artifact):
    _, art = pose_artifact
    axes = {s["name"]: s["time_axis"] for s in art.manifest["inputs"] + art.manifest["outputs"]}
    assert axes == {"poses": 1, "last": None, "smoothed": 2, "new_last": None}
    assert art.manifest["stream"]["chunk_samples"] == 16


@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_odd_blocks_along_axis_1_equal_the_whole_signal(pose_artifact, backend):
    model, art = pose_artifact
    x = np.random.default_rng(1).standard_normal((1, 101, 3)).astype(np.float32)
    with torch.no_grad():
        whole = model(torch.from_numpy(x), torch.zeros(1, 1, 3))[0].numpy()  # (1, 3, 101)
    stream = load(art.path, backend=backend).stream()
    pieces, i = [], 0
    for b in [5, 1, 17, 0, 33, 3]:
        stream.accept(x[:, i:i + b])
        i += b
        pieces.append(stream.read())
    stream.accept(x[:, i:])
    pieces.append(stream.finish())
    assert all(p.shape[:2] == (1, 3) for p in pieces)  # the output's own layout
    out = np.concatenate(pieces, axis=2)
    assert out.shape == whole.shape
    np.testing.assert_allclose(out, whole, atol=1e-5)


def test_a_block_in_the_wrong_layout_is_refused(pose_artifact):
    _, art = pose_artifact
    stream = load(art.path, backend="onnxruntime").stream()
    with pytest.raises(InputError, match=r"expected \(1, T, 3\) with any number T of samples on "
                                         r"axis 1"):
        stream.accept(np.zeros((1, 3, 10), np.float32))
    with pytest.raises(InputError, match=r"expected \(1, T, 3\)"):
        stream.accept(np.zeros(10, np.float32))  # 1-D only when the other axes are 1


@pytest.mark.parametrize("axes,needle", [({"nope": 1}, r"names \['nope'\]"),
                                         ({"poses": 3}, r"time_axes\['poses'\] = 3")])
def test_declared_time_axes_are_checked(axes, needle):
    from avedge.targets.signature import describe

    model = PoseSmoother().eval()
    model.time_axes = axes
    with pytest.raises(AvedgeError, match=needle):
        describe(model, (torch.zeros(1, 16, 3), torch.zeros(1, 1, 3)))
