"""One-step face renderer: reference photo + lips-pose -> frame (stage 1 of lip-sync).

    module = build()
    frame = module(photo, pose, mouth)   # (B,3,H,W), (B,12), (B,4) -> (B,3,H,W)

No mask is given or predicted. Everything is a closed-form function of mouth-centred
coordinates (u along the lips, v across, in half-widths of the mouth):
  1. a backward warp: the lower lip and jaw move down by the opening, the upper lip up,
     the corners in/out with width and rounding; the displacement is multiplied by a
     compactly supported smooth falloff, so it is exactly 0 beyond FALLOFF_U/FALLOFF_V;
  2. a mouth interior (dark cavity, upper/lower teeth bands, tongue) composited between
     the inner lip contours with a 1-pixel soft edge;
  3. the result blended into the photo by the same compact falloff: pixels outside it are
     the photo's, bit for bit.
It is a single pass with static shapes and no data-dependent control flow, so it
exports with torch.export (and to ONNX: GridSample). The warp uses grid_sample; the
project's custom op torch.ops.avedge.mouth_warp (bilinear remap by a displacement
field) computes the same thing and can replace it.

Lips-pose dimensions: avedge.models.corpus.visemes.DIMS (12, each in [0, 1]).
The mouth geometry (cx, cy, half_width in pixels, angle in radians) comes from
avedge.models.corpus.face.find_mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avedge.models.registry import Component, Family, TargetFacts
from avedge.runtime.vision.face_photo import CROP, HW_RANGE, MAX_ROLL, SIZES
from torch import nn

NAME = "face-renderer"
N_POSE = 12
FALLOFF_U = 2.4  # half-widths: horizontal reach of any edit
FALLOFF_V = (-1.6, 3.2)  # half-widths above / below the mouth line (the jaw reaches down)
CAVITY = (0.16, 0.05, 0.06)
TEETH = (0.93, 0.91, 0.86)
TONGUE = (0.72, 0.32, 0.33)


@dataclass
class Dims:
    height: int = 512  # example input size; the module itself takes any static size
    width: int = 512
    max_open: float = 0.75  # lower-lip travel at jaw_open=1, in mouth half-widths
    max_upper: float = 0.22  # upper-lip travel at upper_lip_raise=1
    edge_px: float = 1.0  # soft edge of the mouth opening, pixels
    # Sides of the exported graphs' mouth crops, per output size (export_plan): the
    # runtime's framing (runtime/vision/face_photo.py) sizes them; tests shrink them.
    crop256: int = CROP[256]
    crop512: int = CROP[512]
    # "grid_sample" (torch's, ONNX GridSample) or "mouth_warp" (the avedge kernel: the same
    # bilinear, border-clamped backward warp, by a pixel displacement field).
    warp: str = "grid_sample"


def _smooth01(x: torch.Tensor) -> torch.Tensor:
    """Smoothstep on [0, 1], constant outside: C1 and exactly 0 / 1 at the ends."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class FaceRenderer(nn.Module):
    input_names = ("photo", "pose", "mouth")
    output_names = ("frame",)

    def __init__(self, dims: Dims | None = None):
        super().__init__()
        self.dims = dims or Dims()
        self.register_buffer("cavity", torch.tensor(CAVITY).view(1, 3, 1, 1))
        self.register_buffer("teeth", torch.tensor(TEETH).view(1, 3, 1, 1))
        self.register_buffer("tongue", torch.tensor(TONGUE).view(1, 3, 1, 1))

    def forward(self, photo: torch.Tensor, pose: torch.Tensor, mouth: torch.Tensor):
        # photo (Bp,3,H,W) in [0,1]; pose (B,12) in [0,1]; mouth (Bm,4) = cx, cy, hw, angle
        # with Bp, Bm in {1, B}: one photo and mouth broadcast over a batch of poses, so the
        # pose-independent geometry is computed once (the ROI renderer relies on this).
        B = pose.shape[0]
        Bm = mouth.shape[0]
        H, W = photo.shape[2], photo.shape[3]
        d = self.dims
        p = pose.clamp(0.0, 1.0).view(B, N_POSE, 1, 1)
        jaw, width, up_raise, low_drop = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        rnd, protr, up_t, low_t = p[:, 4], p[:, 5], p[:, 6], p[:, 7]
        tongue, closure, tuck, corner = p[:, 8], p[:, 9], p[:, 10], p[:, 11]

        # -- geometry (Bm,H,W): independent of the pose --------------------------------
        cx, cy = mouth[:, 0].view(Bm, 1, 1), mouth[:, 1].view(Bm, 1, 1)
        hw = mouth[:, 2].view(Bm, 1, 1).clamp(min=2.0)
        ca, sa = torch.cos(mouth[:, 3]).view(Bm, 1, 1), torch.sin(mouth[:, 3]).view(Bm, 1, 1)
        ys = torch.arange(H, dtype=photo.dtype, device=photo.device).view(1, H, 1)
        xs = torch.arange(W, dtype=photo.dtype, device=photo.device).view(1, 1, W)
        dx, dy = xs - cx, ys - cy  # pixels from the mouth centre
        u = (ca * dx + sa * dy) / hw  # along the lips, corners at +-1
        v = (-sa * dx + ca * dy) / hw  # across, positive = down (towards the chin)
        # Compact falloff: 1 near the mouth, exactly 0 beyond the ellipse edge.
        vc = torch.where(v >= 0, v / FALLOFF_V[1], v / -FALLOFF_V[0])
        fall = _smooth01((1.0 - torch.sqrt((u / FALLOFF_U) ** 2 + vc ** 2 + 1e-12)) / 0.45)
        # Width/rounding only moves the lips themselves: a tighter falloff than the jaw.
        near = _smooth01((1.0 - torch.sqrt((u / 1.8) ** 2 + v ** 2 + 1e-12)) / 0.5)
        below = _smooth01((v + 0.3) / 0.6)  # 0 above the lip line, 1 below it
        jaw_reach = _smooth01((FALLOFF_V[1] - v) / 1.5)  # the chin moves, the neck doesn't
        down_w = below * jaw_reach * fall
        up_w = (1.0 - below) * fall
        lift_w = 0.05 * u * u * fall  # corners lift a little with corner_raise
        # Source pixel -> grid_sample's normalized coordinates, as an affine map of (u, v).
        gx0, gxu, gxv = (2 * cx + 1) / W - 1, 2 * hw * ca / W, -2 * hw * sa / W
        gy0, gyu, gyv = (2 * cy + 1) / H - 1, 2 * hw * sa / H, 2 * hw * ca / H
        blend = (fall > 0).to(photo.dtype) * _smooth01(fall * 4.0)

        # -- mouth shape from the pose (B,1,1), in half-widths ---------------------------
        open_ = 1.0 - closure
        low = ((d.max_open * (0.8 * jaw + 0.35 * low_drop) - 0.12 * tuck) * open_).clamp(min=0)
        upp = ((d.max_upper * up_raise + 0.08 * jaw) * open_).clamp(min=0.0)
        sx = (1.0 + 0.3 * (width - 0.5) - 0.3 * rnd - 0.1 * protr).clamp(0.55, 1.3)

        # 1. backward warp: where does output pixel (u, v) come from?  (B,H,W)
        u_src = u / (1.0 + (sx - 1.0) * near)
        v_src = v - low * down_w + upp * up_w + corner * lift_w
        src = photo.expand(B, -1, -1, -1) if photo.shape[0] != B else photo
        if d.warp == "mouth_warp":  # source pixel minus output pixel, (B,2,H,W)
            flow = torch.stack([cx + hw * (ca * u_src - sa * v_src) - xs,
                                cy + hw * (sa * u_src + ca * v_src) - ys], dim=1)
            warped = torch.ops.avedge.mouth_warp(src, flow)
        else:
            grid = torch.stack([gx0 + gxu * u_src + gxv * v_src,
                                gy0 + gyu * u_src + gyv * v_src], dim=-1)  # (B,H,W,2)
            warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                                   align_corners=False)

        # 2. interior between the inner lip contours v_top(u) < v < v_bot(u)
        un = u / sx
        prof = (1.0 - un * un).clamp(min=0.0)
        prof = prof * torch.sqrt(prof + 1e-6)  # fuller in the middle, pinched corners
        k = hw / d.edge_px  # 1-pixel soft edge, in half-width units
        inside = torch.sigmoid((v + upp * prof) * k) * torch.sigmoid((low * prof - v) * k)
        gap = (low + upp) * prof  # opening height, half-widths
        alpha = inside * (gap * hw / 1.5).clamp(0.0, 1.0)  # a closed mouth has no interior
        depth = ((v + upp * prof) / (gap + 1e-3)).clamp(0.0, 1.0)  # 0 top .. 1 bottom
        teeth = (torch.sigmoid((0.28 * up_t - depth) * 24.0) * (up_t > 0.02).to(photo.dtype)
                 + torch.sigmoid((depth - 1.0 + 0.28 * low_t) * 24.0) *
                 (low_t > 0.02).to(photo.dtype)).clamp(max=1.0).unsqueeze(1)
        tong = (tongue * torch.sigmoid((depth - 0.55) * 10.0) * (1.0 - un.abs()).clamp(min=0.0)
                ).unsqueeze(1)
        inner = self.cavity * (1.0 - 0.4 * prof).unsqueeze(1)  # darker deep in the middle
        inner = inner + (self.tongue - inner) * tong
        inner = inner + (self.teeth - inner) * teeth
        img = warped + (inner - warped) * alpha.unsqueeze(1)

        # 3. blend into the photo with the compact falloff (exactly the photo outside)
        return photo + (img - photo) * blend.unsqueeze(1)


def build(dims: Dims | None = None, weights: str | None = None) -> FaceRenderer:
    """The renderer has no learned weights; `weights` is accepted for the registry contract."""
    del weights
    return FaceRenderer(dims).eval()


def example_inputs(module: FaceRenderer):
    d = module.dims
    photo = torch.full((1, 3, d.height, d.width), 0.6)
    pose = torch.zeros(1, N_POSE)
    pose[:, 0] = 0.6  # jaw open: exercises the interior path
    mouth = torch.tensor([[d.width * 0.44, d.height * 0.28, d.width * 0.042, 0.1]])
    return (photo, pose, mouth)


def crop_example(module: FaceRenderer, side: int):
    """Example inputs of a render graph: a (1,3,C,C) crop with the mouth where the framing
    puts it (support box centred), an open-jaw pose that exercises the interior."""
    photo = torch.full((1, 3, side, side), 0.6)
    pose = torch.zeros(1, N_POSE)
    pose[:, 0] = 0.6
    hw = side / 5.4  # the support spans 4.8 half-widths: it fits the crop
    mouth = torch.tensor([[side / 2, side / 2 - 0.8 * hw, hw, 0.05]])
    return (photo, pose, mouth)


def component_name(size: int) -> str:
    return f"render{size}"


def export_plan(module: FaceRenderer, facts: TargetFacts) -> list[Component]:
    """One graph per output size, each on its static mouth crop (the runtime pastes the
    crop back into the framed photo: outside the crop the renderer changes nothing).

    fp16 targets (jetson-orin) get fp32 render graphs unless the user names a recipe: the
    geometry is in pixels (coordinates up to C ~ 284, a 1-px soft edge) and fp16 breaks it
    (measured on the demo face against fp32: at 256, max error 15/255 and 0.75 % of
    pixels off by more than 2/255; at 512, NaN and overflow). The graph has no weights,
    so fp16 would save no memory, and its ~200 elementwise ops are cheap in fp32 on a GPU.

    The exported graphs warp through avedge::mouth_warp (the same frames as grid_sample
    within 1e-5), whatever the module's own `warp`: measured on the 2-core dev VM (best of
    30 calls, 1 thread), render256 0.93 ms in .pte vs 2.2 with grid_sample and 1.0 vs 1.7
    ms in ONNX (the op decomposed into gathers); render512 4.2 vs 6.8 ms in ONNX."""
    import dataclasses

    import avedge.cpp_kernels.ops  # noqa: F401 (registers torch.ops.avedge.mouth_warp)

    d = module.dims
    sides = {256: d.crop256, 512: d.crop512}
    recipe = "fp32" if facts is not None and facts.precision == "fp16" else None
    graph = module if d.warp == "mouth_warp" else \
        FaceRenderer(dataclasses.replace(d, warp="mouth_warp")).eval()  # no weights to copy
    return [Component(component_name(s), graph, crop_example(graph, sides[s]), recipe=recipe)
            for s in SIZES]


def manifest_extra() -> dict:
    """What the runtime needs without importing models/ (runtime/pipelines/lipsync.py).
    "crop" is the shipped framing's; the runtime takes each graph's C from its input
    shape and checks it against the face it was given."""
    return {"task": "face-render", "sizes": {str(s): component_name(s) for s in SIZES},
            "crop": {str(s): CROP[s] for s in SIZES}, "inputs": ["photo", "pose", "mouth"],
            "falloff_u": FALLOFF_U, "falloff_v": list(FALLOFF_V), "hw_range": list(HW_RANGE),
            "max_roll": MAX_ROLL, "pose_dims": N_POSE}


FAMILY = Family(
    name=NAME,
    summary="stage 1 of lip-sync: reference photo + lips-pose -> frame (mouth_warp kernel)",
    build=build,
    example_inputs=example_inputs,
    dims=Dims,
    export_plan=export_plan,
    manifest_extra=manifest_extra,
)
