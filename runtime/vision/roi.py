"""88x88 grayscale mouth ROIs cut from video frames, framed as the training corpus frames them.

The corpus (avedge.models.corpus.render.make_speaker) crops an axis-aligned square of side
ROI_SPAN mouth half-widths centred on the mouth with cv2.warpAffine(INTER_AREA,
BORDER_REFLECT) and takes BT.601 luma; crop_rois does the same on a tracked mouth. Two
differences, both for speed or quality, neither moving the geometry:
  - luma is taken before the warp (one channel to resample instead of three), on a
    window around the mouth only; cv2's fixed-point RGB2GRAY is BT.601 (0.299, 0.587,
    0.114), so a pixel differs from the corpus's float luma by at most one grey level;
  - warpAffine resamples bilinearly whatever the flag says (INTER_AREA is a resize-only
    filter), which aliases when the mouth is much larger than in the corpus (side > 2x
    88 px, e.g. a close-up in 1080p): such windows are first shrunk by an integer factor
    with cv2.resize(INTER_AREA), a true area average, and the affine follows the shrink.
The window is clipped to the frame, so BORDER_REFLECT reflects at the frame's edges
exactly as the corpus's full-frame warp does.
"""

from __future__ import annotations

import numpy as np
from avedge.runtime.errors import InputError

ROI = 88  # standard lip-reading input: 88x88 grayscale
ROI_SPAN = 3.6  # ROI side in mouth half-widths: the mouth is ~55 % of the ROI width


def crop_rois(frames: np.ndarray, track) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB frames + a MouthTrack -> (F, 88, 88) uint8 grayscale ROIs."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (F, H, W, 3) uint8 RGB, got shape {frames.shape} "
                         f"dtype {frames.dtype}")
    if len(track.cx) != len(frames):
        raise InputError(f"the mouth track has {len(track.cx)} frames, the video "
                         f"{len(frames)}; track the same frames you crop")
    out = np.empty((len(frames), ROI, ROI), np.uint8)
    for i, img in enumerate(frames):
        out[i] = crop_roi(img, float(track.cx[i]), float(track.cy[i]),
                          float(track.half_width[i]))
    return out


def crop_roi(rgb: np.ndarray, cx: float, cy: float, half_width: float) -> np.ndarray:
    """One (88, 88) uint8 ROI: the square of side ROI_SPAN * half_width centred on (cx, cy)."""
    import cv2

    H, W = rgb.shape[:2]
    side = ROI_SPAN * max(float(half_width), 1.0)
    s = ROI / side  # output pixels per input pixel
    # Window: the square plus 2 px for the bilinear taps, clipped to the frame.
    r = 0.5 * side + 2
    x0, x1 = max(0, int(np.floor(cx - r))), min(W, int(np.ceil(cx + r)) + 1)
    y0, y1 = max(0, int(np.floor(cy - r))), min(H, int(np.ceil(cy + r)) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the mouth is off the frame: reflect the whole frame
        x0, x1, y0, y1 = 0, W, 0, H
    gray = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    k = int(0.5 / s) if s < 0.5 else 1  # shrink factor keeping the warp a <= 2x reduction
    if k > 1:
        h2, w2 = max(1, gray.shape[0] // k), max(1, gray.shape[1] // k)
        # Exact factor per axis (the crop need not divide by k).
        fx, fy = gray.shape[1] / w2, gray.shape[0] / h2
        gray = cv2.resize(gray, (w2, h2), interpolation=cv2.INTER_AREA)
    else:
        fx = fy = 1.0
    # Pixel centres: input pixel j of the window covers frame x0 + (j + 0.5) * fx - 0.5.
    ax, bx = s * fx, s * (x0 + 0.5 * fx - 0.5 - cx) + ROI / 2
    ay, by = s * fy, s * (y0 + 0.5 * fy - 0.5 - cy) + ROI / 2
    A = np.array([[ax, 0, bx], [0, ay, by]], np.float64)
    return cv2.warpAffine(gray, A, (ROI, ROI), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REFLECT)


def normalize(rois: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 ROIs -> float32 (x / 255 - mean) / std, the model's input scaling."""
    if not std > 0:
        raise InputError(f"ROI std must be positive, got {std!r}")
    x = np.asarray(rois, np.float32) * np.float32(1 / 255)
    return (x - np.float32(mean)) / np.float32(std)
