import numpy as np
import pytest
import torch
from avedge.models import face_renderer as FR
from avedge.models.registry import get_family


@pytest.fixture(scope="module")
def face():
    from avedge.models.corpus.face import default_photo, find_mouth

    img = default_photo()
    m = find_mouth(img)
    photo = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return img, m, photo


def test_mouth_is_found_on_the_astronaut(face):
    _img, m, _ = face
    # The lips of skimage.data.astronaut() are around x 200-248, y 136-152.
    assert 210 < m.cx < 236 and 135 < m.cy < 152, m
    assert 12 < m.half_width < 32 and abs(m.angle) < 0.2


def test_frame_differs_from_the_photo_only_around_the_mouth(face):
    _, m, photo = face
    from avedge.models.corpus.visemes import VISEMES

    pose = torch.from_numpy(VISEMES["aa"][0])[None]
    out = FR.build()(photo, pose, torch.tensor(m.as_array())[None])
    diff = (out - photo).abs().amax(1)[0]  # (H, W)
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert len(ys) > 200  # the mouth did open
    reach = m.half_width * max(FR.FALLOFF_U, FR.FALLOFF_V[1]) + 2
    assert (xs - m.cx).abs().max() <= reach and (ys - m.cy).abs().max() <= reach
    far = torch.ones_like(diff, dtype=torch.bool)
    far[int(m.cy - reach): int(m.cy + reach) + 1, int(m.cx - reach): int(m.cx + reach) + 1] = False
    assert torch.equal(out[0][:, far], photo[0][:, far])  # bit for bit outside
    # the open mouth is dark inside: the cavity replaced the lips at the centre
    cy, cx = int(m.cy + 0.2 * m.half_width), int(m.cx)
    assert out[0, :, cy, cx].mean() < photo[0, :, cy, cx].mean() - 0.2


def test_rest_pose_changes_little_and_batches_broadcast(face):
    _, m, photo = face
    from avedge.models.corpus.visemes import REST

    mouth = torch.tensor(m.as_array())[None]
    poses = torch.from_numpy(np.stack([REST, REST]))
    out = FR.build()(photo, poses, mouth)  # one photo, one mouth, two poses
    assert out.shape == (2, 3, 512, 512)
    assert torch.equal(out[0], out[1])
    assert (out[0] - photo[0]).abs().mean() < 2e-3


def test_registered_and_exportable():
    fam = get_family("face-renderer")
    module = fam.build(fam.dims(height=96, width=96))
    ex = fam.example_inputs(module)
    ep = torch.export.export(module, ex)
    out = ep.module()(*ex)
    assert torch.allclose(out, module(*ex), atol=1e-6)
    assert module.input_names == ("photo", "pose", "mouth") and module.output_names == ("frame",)


@pytest.mark.slow
def test_exports_through_the_cpu_target(tmp_path):
    """~50 s on the shared 2-core box: lowers to .pte and .onnx; onnxruntime agrees."""
    import onnxruntime as ort
    from avedge.targets import get_target

    module = FR.build(FR.Dims(height=96, width=96))
    ex = FR.example_inputs(module)
    get_target("cpu").export(module, ex, tmp_path / "art", recipe="fp32")
    files = {p.name for p in (tmp_path / "art").iterdir()}
    assert {"manifest.json", "model.onnx"} <= files
    sess = ort.InferenceSession(str(tmp_path / "art" / "model.onnx"))
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), ex)}
    got = sess.run(None, feeds)[0]
    np.testing.assert_allclose(got, module(*ex).detach().numpy(), atol=1e-4)
