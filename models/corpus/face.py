"""Finding the mouth on a frontal face photo, and face variations ("speakers").

Mouth finder: OpenCV's Haar frontal-face cascade (ships in opencv-python-headless<5)
gives the face box; inside its lower part the lips are located by colour: the reddest
pixels (Lab a* channel, top LIP_PERCENTILE) give the mouth centre, width and tilt (a
principal axis fit). We chose this over haarcascade_smile because the smile cascade
fires on open, smiling mouths and misses closed neutral ones, and no mouth cascade
ships with OpenCV 4.x wheels; lip redness is a strong cue on any frontal colour photo.
Without a face detection we fall back to geometric priors of the image centre.

A variation is a similarity transform (scale, shift, small rotation) plus colour gains,
contrast and a linear lighting gradient, applied once per "speaker" to the photo; the
mouth geometry goes through the same transform, so no re-detection is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from avedge.runtime.errors import AvedgeError

LIP_PERCENTILE = 88  # reddest 12 % of the lower-face box are lips
LOWER_FACE = (0.62, 0.97, 0.2, 0.8)  # y0, y1, x0, x1 as fractions of the face box


@dataclass
class Mouth:
    cx: float  # pixels
    cy: float
    half_width: float  # pixels, centre to corner
    angle: float  # radians, positive = clockwise in image coordinates

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.half_width, self.angle], np.float32)


def default_photo() -> np.ndarray:
    """skimage.data.astronaut(): 512x512 RGB uint8, public domain, frontal."""
    try:
        import skimage.data
    except ImportError as exc:
        raise AvedgeError("scikit-image is needed for the default face; pip install "
                          "'avedge[corpus]'") from exc
    return skimage.data.astronaut()


def find_mouth(rgb: np.ndarray) -> Mouth:
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise AvedgeError(f"face photo must be RGB (H, W, 3); got shape {rgb.shape}")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(gray, 1.1, 5, minSize=(40, 40))
    H, W = gray.shape
    if len(faces):
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    else:  # no detection: assume a centred face filling half the image
        w = h = min(H, W) // 2
        x, y = (W - w) // 2, (H - h) // 2
    y0, y1 = y + int(LOWER_FACE[0] * h), min(H, y + int(LOWER_FACE[1] * h))
    x0, x1 = x + int(LOWER_FACE[2] * w), x + int(LOWER_FACE[3] * w)
    a = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[y0:y1, x0:x1, 1].astype(np.float32)
    thr = np.percentile(a, LIP_PERCENTILE)
    ys, xs = np.nonzero(a >= thr)
    if len(xs) < 10:
        return Mouth(x + 0.5 * w, y + 0.8 * h, 0.2 * w, 0.0)
    pts = np.stack([xs + x0, ys + y0], 1).astype(np.float64)
    c = pts.mean(0)
    # Head roll from the eyes (the lip blob's own axis is biased by a smile's curve).
    angle = _eye_roll(gray, x, y, w, h)
    major = np.array([np.cos(angle), np.sin(angle)])
    proj = (pts - c) @ major
    half = float(np.percentile(np.abs(proj), 97))
    half = float(np.clip(half, 0.12 * w, 0.35 * w))
    return Mouth(float(c[0]), float(c[1]), half, angle)


def _eye_roll(gray: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """Roll angle of the line through the two eyes (Haar eye cascade), 0 if not found."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    roi = gray[y: y + int(0.6 * h), x: x + w]
    eyes = cascade.detectMultiScale(roi, 1.1, 5, minSize=(max(8, w // 10),) * 2)
    if len(eyes) < 2:
        return 0.0
    eyes = sorted(eyes, key=lambda e: -e[2] * e[3])[:2]
    (ax, ay), (bx, by) = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in eyes]
    if ax > bx:
        ax, ay, bx, by = bx, by, ax, ay
    return float(np.clip(np.arctan2(by - ay, bx - ax), -0.3, 0.3))


@dataclass
class FaceVariation:
    scale: float = 1.0
    shift_x: float = 0.0  # pixels
    shift_y: float = 0.0
    rotation: float = 0.0  # radians
    gain_r: float = 1.0
    gain_g: float = 1.0
    gain_b: float = 1.0
    contrast: float = 1.0
    light_x: float = 0.0  # brightness gradient across the image, -1..1 side to side
    light_y: float = 0.0

    @staticmethod
    def sample(rng: np.random.Generator) -> FaceVariation:
        return FaceVariation(
            scale=float(rng.uniform(0.9, 1.15)), shift_x=float(rng.uniform(-20, 20)),
            shift_y=float(rng.uniform(-20, 20)), rotation=float(rng.uniform(-0.08, 0.08)),
            gain_r=float(rng.uniform(0.85, 1.15)), gain_g=float(rng.uniform(0.85, 1.15)),
            gain_b=float(rng.uniform(0.85, 1.15)), contrast=float(rng.uniform(0.8, 1.2)),
            light_x=float(rng.uniform(-0.25, 0.25)), light_y=float(rng.uniform(-0.15, 0.15)))

    def to_json(self) -> dict:
        return {k: round(v, 5) for k, v in asdict(self).items()}


def apply_variation(rgb: np.ndarray, mouth: Mouth, var: FaceVariation):
    """-> (varied photo uint8 (H, W, 3), mouth in the varied photo)."""
    import cv2

    H, W = rgb.shape[:2]
    # Rotate/scale about the mouth so it stays in frame, then shift.
    M = cv2.getRotationMatrix2D((mouth.cx, mouth.cy), np.degrees(-var.rotation), var.scale)
    M[:, 2] += (var.shift_x, var.shift_y)
    out = cv2.warpAffine(rgb, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    img = out.astype(np.float32) / 255.0
    img = (img - 0.5) * var.contrast + 0.5
    img *= np.array([var.gain_r, var.gain_g, var.gain_b], np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    light = 1.0 + var.light_x * (xx / W - 0.5) * 2 + var.light_y * (yy / H - 0.5) * 2
    img = np.clip(img * light[..., None], 0, 1)
    c = M @ np.array([mouth.cx, mouth.cy, 1.0])
    m2 = Mouth(float(c[0]), float(c[1]), mouth.half_width * var.scale,
               mouth.angle + var.rotation)
    return (img * 255 + 0.5).astype(np.uint8), m2
