"""Finding the mouth on a frontal face image: one finder for the corpus and the runtime.

OpenCV's Haar frontal-face cascade gives the face box (the most confident detection,
not the largest: on a busy picture a larger false box, e.g. on clothing, can outrank the
face in size but not in the cascade's stage weight). Inside the box's lower part the
lips are located by colour: the reddest pixels (Lab a* channel, top LIP_PERCENTILE) give
the mouth centre and width, the eyes (Haar eye cascade) the head roll. We chose lip
colour over haarcascade_smile because the smile cascade fires on open, smiling mouths
and misses closed neutral ones, and no mouth cascade ships with OpenCV 4.x wheels.

Without colour (grayscale sources, where R = G = B), or when the lip pixels do not stand
out from the skin (a flat or washed-out frame), the lip cue is gone: `mouth_in_face`
returns None and callers use the face box's geometric prior (`geometric_mouth`).

Licence of the detector data: the cascades ship inside the opencv-python-headless wheel
(cv2/data/; the wheel is Apache-2.0 for OpenCV >= 4.5). haarcascade_frontalface_default.xml
carries its own header: "Stump-based 24x24 discrete(?) adaboost frontal face detector.
Created by Rainer Lienhart." under the "Intel License Agreement For Open Source Computer
Vision Library, Copyright (C) 2000, Intel Corporation" (a BSD-3-style licence:
redistribution in source and binary form permitted with the notice retained; no
endorsement by Intel's name). No training-data restriction is attached.

Why not a landmark model here:
  - mediapipe (0.10.14/0.10.21, the last versions whose wheels carry the face-landmark
    .tflite files): the 0.10.21 wheel requires numpy<2, protobuf<5, opencv-contrib-python
    (a second OpenCV beside -headless), jax and jaxlib; this project runs numpy 2.1 and
    protobuf 7, where its FaceMesh fails at start-up (protobuf API change);
  - dlib's 68-point shape predictor: its training data (iBUG 300-W) is licensed for
    non-commercial use only;
  - MTCNN (facenet-pytorch): needs torch, and the runtime does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from avedge.runtime.errors import AvedgeError

LIP_PERCENTILE = 88  # reddest 12 % of the lower-face box are lips
LOWER_FACE = (0.62, 0.97, 0.2, 0.8)  # y0, y1, x0, x1 as fractions of the face box
# Geometric mouth in a Haar frontal-face box (fractions of the box): centre x, y, half
# width. Measured on the corpus face over its variations (box 0.50 / 0.80 / 0.197);
# anthropometric tables put the mouth at ~0.8 of the Haar box height, too.
BOX_MOUTH = (0.5, 0.8, 0.2)
# Lip pixels must be this much redder (Lab a*, 0..255 scale) than the lower-face median,
# else the colour cue is absent (grayscale, flat or washed-out frame).
MIN_LIP_CONTRAST = 4.0
CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"
_CASCADES: dict = {}


@dataclass
class Mouth:
    cx: float  # pixels
    cy: float
    half_width: float  # pixels, centre to corner
    angle: float  # radians, positive = clockwise in image coordinates

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.half_width, self.angle], np.float32)


def cascade(name: str = CASCADE):
    """A loaded Haar cascade from OpenCV's wheel (cached: loading parses ~1 MB of XML)."""
    import cv2

    if name not in _CASCADES:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if c.empty():
            raise AvedgeError(f"OpenCV's {name} is missing from the installed wheel; "
                              "pip install 'opencv-python-headless<5'")
        _CASCADES[name] = c
    return _CASCADES[name]


def face_box(gray: np.ndarray, min_size: int = 40, max_size: int = 0,
             scale_factor: float = 1.1) -> tuple[int, int, int, int] | None:
    """Most confident frontal face (x, y, w, h) in a uint8 grayscale image, or None."""
    boxes, _, weights = cascade().detectMultiScale3(
        gray, scale_factor, 5, minSize=(min_size, min_size), maxSize=(max_size, max_size),
        outputRejectLevels=True)
    if len(boxes) == 0:
        return None
    return tuple(int(v) for v in boxes[int(np.argmax(weights))])


def geometric_mouth(box) -> Mouth:
    x, y, w, h = box
    return Mouth(x + BOX_MOUTH[0] * w, y + BOX_MOUTH[1] * h, BOX_MOUTH[2] * w, 0.0)


def lip_pixels(rgb: np.ndarray, box) -> np.ndarray | None:
    """(N, 2) float64 x, y frame coordinates of the lip pixels in the lower part of a face
    box (the reddest LIP_PERCENTILE of Lab a*); None when the colour cue is absent."""
    import cv2

    x, y, w, h = box
    H, W = rgb.shape[:2]
    y0, y1 = max(0, y + int(LOWER_FACE[0] * h)), min(H, y + int(LOWER_FACE[1] * h))
    x0, x1 = max(0, x + int(LOWER_FACE[2] * w)), min(W, x + int(LOWER_FACE[3] * w))
    if y1 - y0 < 4 or x1 - x0 < 4:
        return None
    a = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32)
    thr = np.percentile(a, LIP_PERCENTILE)
    ys, xs = np.nonzero(a >= thr)
    if len(xs) < 10 or float(np.median(a[ys, xs]) - np.median(a)) < MIN_LIP_CONTRAST:
        return None
    return np.stack([xs + x0, ys + y0], 1).astype(np.float64)


def mouth_in_face(rgb: np.ndarray, gray: np.ndarray | None, box,
                  angle: float | None = None) -> Mouth | None:
    """Lips by colour in the lower part of a face box; None when the colour cue is absent.

    A given `angle` skips the eye search in `gray` (a tracker holds the roll between
    detections; then `gray` may be None)."""
    pts = lip_pixels(rgb, box)
    if pts is None:
        return None
    x, y, w, h = box
    c = pts.mean(0)
    # Head roll from the eyes (the lip blob's own axis is biased by a smile's curve).
    if angle is None:
        angle = _eye_roll(gray, x, y, w, h)
    major = np.array([np.cos(angle), np.sin(angle)])
    proj = (pts - c) @ major
    half = float(np.percentile(np.abs(proj), 97))
    half = float(np.clip(half, 0.12 * w, 0.35 * w))
    return Mouth(float(c[0]), float(c[1]), half, angle)


def find_mouth(rgb: np.ndarray) -> Mouth:
    """The mouth of the face in an RGB photo; without a face, priors of a centred face."""
    rgb, gray = _checked(rgb)
    H, W = gray.shape
    box = face_box(gray)
    if box is None:  # no detection: assume a centred face filling half the image
        w = h = min(H, W) // 2
        box = ((W - w) // 2, (H - h) // 2, w, h)
    return mouth_in_face(rgb, gray, box) or geometric_mouth(box)


def detect_mouth(rgb: np.ndarray) -> Mouth | None:
    """find_mouth without the fallback: None when no face is detected. A face without a
    lip-colour cue (grayscale) gives the face box's geometric mouth."""
    rgb, gray = _checked(rgb)
    box = face_box(gray)
    if box is None:
        return None
    return mouth_in_face(rgb, gray, box) or geometric_mouth(box)


def _checked(rgb: np.ndarray):
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise AvedgeError(f"face photo must be RGB (H, W, 3); got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise AvedgeError(f"face photo must be uint8 (0..255); got dtype {rgb.dtype}")
    return rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _eye_roll(gray: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """Roll angle of the line through the two eyes (Haar eye cascade), 0 if not found."""
    roi = gray[max(0, y): y + int(0.6 * h), max(0, x): x + w]
    if roi.size == 0:
        return 0.0
    eyes = cascade(EYE_CASCADE).detectMultiScale(roi, 1.1, 5, minSize=(max(8, w // 10),) * 2)
    if len(eyes) < 2:
        return 0.0
    eyes = sorted(eyes, key=lambda e: -e[2] * e[3])[:2]
    (ax, ay), (bx, by) = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in eyes]
    if ax > bx:
        ax, ay, bx, by = bx, by, ax, ay
    return float(np.clip(np.arctan2(by - ay, bx - ax), -0.3, 0.3))
