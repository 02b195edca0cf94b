"""Finding the mouth on a frontal face photo, and face variations ("speakers").

Mouth finder: avedge.runtime.vision.mouth.find_mouth (one finder for the corpus and the
runtime; Mouth and find_mouth are re-exported here): OpenCV's Haar frontal-face cascade
for the face box, lip redness inside its lower part for the mouth.

A variation is a similarity transform (scale, shift, small rotation) plus colour gains,
contrast and a linear lighting gradient, applied once per "speaker" to the photo; the
mouth geometry goes through the same transform, so no re-detection is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from avedge.runtime.errors import AvedgeError
from avedge.runtime.vision.mouth import Mouth, find_mouth  # noqa: F401 (re-exported)


def default_photo() -> np.ndarray:
    """skimage.data.astronaut(): 512x512 RGB uint8, public domain, frontal."""
    try:
        import skimage.data
    except ImportError as exc:
        raise AvedgeError("scikit-image is needed for the default face; pip install "
                          "'avedge[corpus]'") from exc
    return skimage.data.astronaut()


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

    @staticmethod
    def of_voice(seed: int, voice: str) -> FaceVariation:
        """The face a voice gets under a seed (the corpus writer's --seed): a function of
        (seed, voice), so a voice keeps its face and every tool draws the same one."""
        import zlib

        return FaceVariation.sample(np.random.default_rng([seed, zlib.crc32(voice.encode())]))

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
