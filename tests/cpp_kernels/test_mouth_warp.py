"""avedge::mouth_warp: opcheck, equivalence with the reference and with grid_sample,
geometric identities, border handling, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import DTYPES, assert_close


def make(B=2, C=3, H=19, W=23, scale=4.0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(B, C, H, W, generator=g).to(dtype)
    flow = (torch.randn(B, 2, H, W, generator=g) * scale).to(dtype)
    return image, flow


def grid_sample_warp(image, flow):
    """Independent formulation through grid_sample (align_corners, border padding)."""
    _, _, H, W = image.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    gx = (xs + flow[:, 0]) / max(W - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(H - 1, 1) * 2 - 1
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(ck, dtype):
    image, flow = make(dtype=dtype)
    assert_close(ck.mouth_warp(image, flow), ck.reference.mouth_warp(image, flow))


def test_matches_grid_sample(ck):
    image, flow = make(B=1, C=4, H=64, W=48, scale=10.0)
    torch.testing.assert_close(ck.mouth_warp(image, flow), grid_sample_warp(image, flow),
                               atol=2e-5, rtol=1e-5)


def test_zero_flow_is_identity(ck):
    image, flow = make()
    torch.testing.assert_close(ck.mouth_warp(image, torch.zeros_like(flow)), image)


def test_integer_shift_and_border(ck):
    image, _ = make(B=1, C=2, H=8, W=10)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 3.0  # sample 3 px to the right
    out = ck.mouth_warp(image, flow)
    torch.testing.assert_close(out[..., :7], image[..., 3:])
    # Past the right edge the last column repeats (border), never zeros.
    torch.testing.assert_close(out[..., 7:], image[..., 9:10].expand(-1, -1, -1, 3))


def test_half_pixel_shift_averages_neighbours(ck):
    image, _ = make(B=1, C=1, H=4, W=6)
    flow = torch.zeros(1, 2, 4, 6)
    flow[:, 1] = 0.5
    out = ck.mouth_warp(image, flow)
    torch.testing.assert_close(out[:, :, :3], 0.5 * (image[:, :, :3] + image[:, :, 1:]))


def test_far_displacement_clamps_to_corner(ck):
    image, _ = make(B=1, C=3, H=5, W=7)
    flow = torch.full((1, 2, 5, 7), 1e4)
    out = ck.mouth_warp(image, flow)
    torch.testing.assert_close(out, image[:, :, -1:, -1:].expand_as(image))


def test_non_contiguous_inputs(ck):
    image, flow = make(H=16, W=16)
    image_t, flow_t = image.transpose(2, 3), flow.transpose(2, 3)  # (B, C, W, H) views
    assert not image_t.is_contiguous()
    assert_close(ck.mouth_warp(image_t, flow_t),
                 ck.reference.mouth_warp(image_t.contiguous(), flow_t.contiguous()))


def test_single_pixel_image(ck):
    image, flow = make(H=1, W=1)
    torch.testing.assert_close(ck.mouth_warp(image, flow), image)


def test_out_variant(ck):
    image, flow = make()
    out = torch.empty(0)
    ret = torch.ops.avedge.mouth_warp.out(image, flow, out=out)
    assert ret is out
    assert_close(out, ck.reference.mouth_warp(image, flow))


def test_opcheck(ck):
    image, flow = make(B=1, C=2, H=6, W=5)
    torch.library.opcheck(torch.ops.avedge.mouth_warp.default, (image, flow))
    torch.library.opcheck(torch.ops.avedge.mouth_warp.out, (image, flow), {"out": torch.empty_like(image)},
                          test_utils=("test_schema", "test_faketensor"))


def test_bad_arguments_raise(ck):
    image, flow = make()
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        ck.mouth_warp(image, flow[:, :1])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ck.mouth_warp(image[0], flow[0])
    with pytest.raises(TypeError, match="has dtype"):
        ck.mouth_warp(image, flow.half())
