"""prepare_face: any photo -> a framed face with a static mouth crop for the render graphs."""

import numpy as np
import pytest
from avedge.runtime.errors import InputError
from avedge.runtime.vision import face_photo as FP


@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


def _save(rgb, path, **kw):
    from PIL import Image

    Image.fromarray(rgb).save(path, **kw)
    return path


@pytest.mark.parametrize("size", [256, 512])
def test_frame_normalises_the_mouth_and_crop_holds_the_support(astronaut, size):
    face = FP.prepare_face(astronaut, size)
    assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
    lo, hi = FP.HW_RANGE
    assert lo * size <= face.mouth.half_width <= hi * size
    x0, y0, c = face.crop_box
    assert c == FP.CROP[size] and 0 <= x0 <= size - c and 0 <= y0 <= size - c
    # the mouth sits where the framing put it (the finder ran on the framed image)
    assert abs(face.mouth.cx - FP.MOUTH_AT[0] * size) < 0.05 * size
    assert abs(face.mouth.cy - FP.MOUTH_AT[1] * size) < 0.05 * size
    np.testing.assert_allclose(face.crop_mouth[:2], [face.mouth.cx - x0, face.mouth.cy - y0],
                               atol=1e-3)
    ex = FP.support_extent(face.mouth.half_width)
    assert face.mouth.cx + ex[0] >= x0 and face.mouth.cx + ex[1] <= x0 + c
    assert face.mouth.cy + ex[2] >= y0 and face.mouth.cy + ex[3] <= y0 + c
    assert face.faces_found == 1 and face.face_box[2] > 60


def test_rendering_the_crop_and_pasting_equals_rendering_the_frame(astronaut):
    """What makes C static and the paste exact: the renderer changes nothing outside the
    crop, at the widest mouth the range allows and the largest roll."""
    torch = pytest.importorskip("torch")
    from avedge.models import face_renderer as FR

    size = 256
    face = FP.prepare_face(astronaut, size)
    m = face.mouth
    x0, y0, c = face.crop_box
    full = torch.from_numpy(face.image).permute(2, 0, 1)[None].float() / 255
    pose = torch.full((1, 12), 0.9)
    pose[0, 9] = 0.0  # no lip closure: widest opening
    for hw, ang in [(m.half_width, m.angle), (FP.HW_RANGE[1] * size, FP.MAX_ROLL),
                    (FP.HW_RANGE[1] * size, -FP.MAX_ROLL)]:
        box = FP._crop_box(FP.Mouth(m.cx, m.cy, hw, ang), size)
        x0, y0, c = box
        whole = FR.build()(full, pose, torch.tensor([[m.cx, m.cy, hw, ang]]))
        crop = full[:, :, y0:y0 + c, x0:x0 + c]
        part = FR.build()(crop, pose, torch.tensor([[m.cx - x0, m.cy - y0, hw, ang]]))
        pasted = full.clone()
        pasted[:, :, y0:y0 + c, x0:x0 + c] = part
        assert (whole - full).abs().max() > 0.2  # the mouth did move
        assert (pasted - whole).abs().max() < 1e-4, (hw, ang)


def test_file_formats_grayscale_rgba_palette(astronaut, tmp_path):
    png = FP.prepare_face(_save(astronaut, tmp_path / "a.png"), 256)
    jpg = FP.prepare_face(_save(astronaut, tmp_path / "a.jpg", quality=92), 256)
    assert png.source.endswith("a.png") and not png.notes
    assert abs(jpg.mouth.cx - png.mouth.cx) < 3 and abs(jpg.mouth.cy - png.mouth.cy) < 3

    gray = FP.prepare_face(_save(astronaut.mean(2).astype(np.uint8), tmp_path / "g.png"), 256)
    assert any("lip colour" in n for n in gray.notes)
    assert np.ptp(gray.image.astype(int), axis=2).max() <= 1  # still gray, as RGB

    from PIL import Image

    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0  # a transparent strip: composited over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    t = FP.prepare_face(tmp_path / "t.png", 256)
    assert abs(t.mouth.cx - png.mouth.cx) < 2

    Image.fromarray(astronaut).quantize(256).save(tmp_path / "p.png")
    pal = FP.prepare_face(tmp_path / "p.png", 256)
    assert abs(pal.mouth.cy - png.mouth.cy) < 4
    assert FP.prepare_face(rgba, 256).image.shape == (256, 256, 3)  # arrays too


def test_unreadable_missing_and_no_face(tmp_path, astronaut):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(InputError, match="not a readable image"):
        FP.prepare_face(bad, 256)
    with pytest.raises(InputError, match="does not exist"):
        FP.prepare_face(tmp_path / "missing.png", 256)
    flat = np.full((300, 300, 3), 128, np.uint8)
    with pytest.raises(InputError, match=r"no frontal face found in .*at least 48 px"):
        FP.prepare_face(_save(flat, tmp_path / "flat.png"), 256)
    with pytest.raises(InputError, match="size must be one of 256, 512"):
        FP.prepare_face(astronaut, 300)


def test_tiny_image_and_tiny_face(astronaut):
    import cv2

    with pytest.raises(InputError, match=r"is 30x30 px; .*at least 48 px"):
        FP.prepare_face(np.zeros((30, 30, 3), np.uint8), 256)
    # the face (95 px in the original) shrunk to ~24 px: below the detector's minimum
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    with pytest.raises(InputError, match="no frontal face"):
        FP.prepare_face(small, 256)


def test_several_faces_the_largest_with_a_note(astronaut):
    import cv2

    big = astronaut[:300, 100:400]
    small = cv2.resize(big, (200, 200), interpolation=cv2.INTER_AREA)
    canvas = np.full((320, 540, 3), 200, np.uint8)
    canvas[10:310, 0:300] = big
    canvas[60:260, 330:530] = small
    face = FP.prepare_face(canvas, 256)
    assert face.faces_found == 2 and any("2 faces found; the largest" in n for n in face.notes)
    assert face.face_box[0] < 300  # the big one, on the left


def test_huge_jpeg_is_decoded_small_and_edge_faces_are_padded(astronaut, tmp_path):
    import cv2

    huge = cv2.resize(astronaut, (6144, 6144), interpolation=cv2.INTER_LINEAR)
    path = _save(huge, tmp_path / "huge.jpg", quality=70)
    del huge
    face = FP.prepare_face(path, 512)
    assert face.source_size == (6144, 6144)
    assert any("downscaled" in n for n in face.notes)
    assert 1000 < face.face_box[2] < 1300  # in the file's own pixels (95 px x 12)
    # a face cut at the photo's top edge: the frame repeats the edge
    top = astronaut[40:, 150:]
    f2 = FP.prepare_face(top, 256)
    assert any("edge" in n for n in f2.notes)


def test_falloff_constants_match_the_renderer():
    pytest.importorskip("torch")
    from avedge.models import face_renderer as FR

    assert FP.FALLOFF_U == FR.FALLOFF_U and FP.FALLOFF_V == FR.FALLOFF_V


def test_the_mouth_warp_kernel_renders_what_grid_sample_does(astronaut):
    """models/face_renderer.py Dims(warp="mouth_warp"): the avedge kernel in place of
    grid_sample (what makes the .pte render ~2x faster at 256 here), same frames."""
    torch = pytest.importorskip("torch")
    import avedge.cpp_kernels.ops  # noqa: F401 (registers torch.ops.avedge)
    from avedge.models import face_renderer as FR

    face = FP.prepare_face(astronaut, 256)
    crop = torch.from_numpy(face.crop.astype(np.float32) / 255).permute(2, 0, 1)[None]
    pose = torch.full((1, 12), 0.4)
    pose[0, 0], pose[0, 9] = 0.9, 0.0
    mouth = torch.from_numpy(face.crop_mouth[None].copy())
    a = FR.build()(crop, pose, mouth)
    b = FR.build(FR.Dims(warp="mouth_warp"))(crop, pose, mouth)
    assert (a - crop).abs().max() > 0.2
    assert (a - b).abs().max() < 1e-4
