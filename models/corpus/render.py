"""Rendering lips-pose trajectories with the face renderer: mouth ROIs and full frames.

A `Speaker` is one face variation of a photo with its mouth geometry, prepared once;
then frames cost one renderer pass per batch of poses. The 88x88 ROI is rendered
directly at ROI resolution (the renderer is resolution-free: the mouth geometry is
scaled into the crop), which is what makes >= 500 ROI frames/s possible on 2 cores.
Full frames render a crop around the mouth that contains the renderer's whole support
and paste it back; outside that support the renderer changes nothing anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from avedge.models import face_renderer as FR
from avedge.models.corpus.face import (
    FaceVariation,
    Mouth,
    apply_variation,
    default_photo,
    find_mouth,
)
from avedge.runtime.vision.roi import ROI, ROI_SPAN

BATCH = 128
GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


@dataclass
class Speaker:
    photo: np.ndarray  # (H, W, 3) uint8, the varied photo
    mouth: Mouth
    variation: FaceVariation
    roi_photo: torch.Tensor  # (1, 3, ROI, ROI) float
    roi_mouth: torch.Tensor  # (1, 4) mouth geometry in ROI pixels


def _crop_affine(mouth: Mouth, side_px: float, out: int) -> np.ndarray:
    """2x3 affine from the photo to an axis-aligned `out`-pixel square around the mouth."""
    s = out / side_px
    return np.array([[s, 0, out / 2 - s * mouth.cx], [0, s, out / 2 - s * mouth.cy]], np.float64)


def make_speaker(variation: FaceVariation, photo: np.ndarray | None = None,
                 mouth: Mouth | None = None) -> Speaker:
    import cv2

    base = default_photo() if photo is None else photo
    m0 = find_mouth(base) if mouth is None else mouth
    img, m = apply_variation(base, m0, variation)
    side = ROI_SPAN * m.half_width
    A = _crop_affine(m, side, ROI)
    crop = cv2.warpAffine(img, A, (ROI, ROI), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    roi_photo = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0
    roi_mouth = torch.tensor([[ROI / 2 - 0.5, ROI / 2 - 0.5, m.half_width * ROI / side, m.angle]])
    return Speaker(img, m, variation, roi_photo, roi_mouth)


_RENDERER: FR.FaceRenderer | None = None


def renderer() -> FR.FaceRenderer:
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = FR.build()
    return _RENDERER


@torch.inference_mode()
def render_roi(speaker: Speaker, poses: np.ndarray) -> np.ndarray:
    """(F, 12) lips-pose -> (F, 88, 88) uint8 grayscale mouth ROIs."""
    out = []
    gray = torch.tensor(GRAY).view(1, 3, 1, 1)
    for i in range(0, len(poses), BATCH):
        p = torch.from_numpy(np.ascontiguousarray(poses[i: i + BATCH]))
        rgb = renderer()(speaker.roi_photo, p, speaker.roi_mouth)  # photo/mouth broadcast
        g = (rgb * gray).sum(1) * 255.0 + 0.5
        out.append(g.clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, ROI, ROI), np.uint8)


@torch.inference_mode()
def render_frames(speaker: Speaker, poses: np.ndarray):
    """(F, 12) -> iterator of (H, W, 3) uint8 full frames (a generator: video is big)."""
    H, W = speaker.photo.shape[:2]
    m = speaker.mouth
    r = int(np.ceil(max(FR.FALLOFF_U, FR.FALLOFF_V[1]) * m.half_width)) + 4
    x0, x1 = max(0, int(m.cx) - r), min(W, int(m.cx) + r)
    y0, y1 = max(0, int(m.cy) - r), min(H, int(m.cy) + r)
    crop = torch.from_numpy(speaker.photo[y0:y1, x0:x1]).permute(2, 0, 1)[None].float() / 255
    mouth = torch.tensor([[m.cx - x0, m.cy - y0, m.half_width, m.angle]])
    for i in range(0, len(poses), BATCH):
        p = torch.from_numpy(np.ascontiguousarray(poses[i: i + BATCH]))
        rgb = renderer()(crop, p, mouth)
        rgb = (rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for fr in rgb:
            full = speaker.photo.copy()
            full[y0:y1, x0:x1] = fr
            yield full
