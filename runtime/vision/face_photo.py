"""A face photo made ready for lip-sync: framed, its mouth found, a fixed-size mouth crop.

    >>> from avedge.runtime.vision.face_photo import prepare_face
    >>> face = prepare_face("portrait.jpg", 256)                       # doctest: +SKIP
    >>> face.image.shape, face.crop_box, face.crop_mouth, face.notes    # doctest: +SKIP
    ((256, 256, 3), (55, 78, 148), array([73.1, 52.4, 24.3, 0.06]), [])

Why a fixed crop: the renderer's graphs ("render256", "render512") take a mouth crop of a
static side C per output size; every pixel it may change lies within FALLOFF half-widths
of the mouth, so C must hold that support for the widest mouth and the largest head roll.
The framing therefore normalises the face by its MOUTH: the square cut from the photo is
sized so that the mouth half-width lands near HW_TARGET * size (within HW_RANGE; the
finder is run again on the framed image and its half-width clamped to the range), and the
mouth is placed at MOUTH_AT of the frame. CROP[size] follows from those numbers.

Documented handling:
  - files: anything Pillow reads (PNG, JPEG, WebP, BMP, TIFF, GIF: the first frame),
    EXIF rotation applied; grayscale and 16-bit grayscale -> RGB; RGBA/LA and palette
    images with transparency are composited over white; an unreadable/corrupt file, or a
    path that is not a file: InputError naming it;
  - arrays: (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA, uint8;
  - huge images: a JPEG is decoded at a reduced scale (Pillow's draft), any image is
    brought to at most MAX_WORK pixels on its long side before anything else, and the
    face is searched on a copy of at most DETECT_SIDE; over Pillow's decompression-bomb
    limit (~179 MP), or a non-JPEG over MAX_DECODE_MP, is refused;
  - no face: InputError "no frontal face found in IMG; a frontal photo with the face at
    least MIN_FACE px is needed"; an image smaller than MIN_FACE: InputError saying so;
  - several faces: the largest is used and a note says how many were found;
  - a face near the photo's edge: the frame is padded by repeating the edge (noted);
  - a small face (upscaled more than 2x into the frame): noted (the video will be soft);
  - no lip colour (grayscale, washed out): the face box's geometric mouth (noted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from avedge.runtime.errors import InputError
from avedge.runtime.vision.mouth import (
    Mouth,
    cascade,
    geometric_mouth,
    mouth_in_face,
)

SIZES = (256, 512)
# The renderer's support, in mouth half-widths (models/face_renderer.py FALLOFF_U/_V:
# runtime/ cannot import models/, a test checks that the two agree).
FALLOFF_U = 2.4
FALLOFF_V = (-1.6, 3.2)
MAX_ROLL = 0.3  # radians: the finder's eye-line roll is clipped to this (mouth.py)
HW_TARGET = 0.095  # mouth half-width / frame side that the framing aims at
HW_RANGE = (0.08, 0.11)  # what the crop is sized for; a re-found width is clamped into it
MOUTH_AT = (0.5, 0.6)  # where the mouth centre sits in the frame (fractions of the side)
FACE_FRAME = (1.5, 3.0)  # the frame side stays within these multiples of the face box side
CROP_MARGIN = 2  # pixels around the support: bilinear taps and rounding
MIN_FACE = 48  # px: smallest face the detector is asked to find
DETECT_SIDE = 1024  # faces are searched on a copy at most this large
MAX_WORK = 4096  # px, long side: larger photos are downscaled first
MAX_DECODE_MP = 50  # megapixels: non-JPEG files above this are refused (decoded whole)
ACCEPTED = "a PNG/JPEG/WebP/BMP/TIFF photo with a frontal face"


def support_extent(half_width: float, max_roll: float = MAX_ROLL) -> tuple[float, float,
                                                                           float, float]:
    """(x_min, x_max, y_min, y_max) pixels from the mouth centre that the renderer may
    change (or read), over every roll angle within +-max_roll."""
    t = np.linspace(0, 2 * np.pi, 721)
    u = FALLOFF_U * np.cos(t)
    v = np.where(np.sin(t) < 0, -FALLOFF_V[0], FALLOFF_V[1]) * np.sin(t)
    xs, ys = [], []
    for a in np.linspace(-max_roll, max_roll, 31):
        ca, sa = math.cos(a), math.sin(a)
        xs.append(half_width * (ca * u - sa * v))  # inverse of the renderer's (u, v)
        ys.append(half_width * (sa * u + ca * v))
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    return float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())


def crop_side(size: int) -> int:
    """The static crop side C of the render graph for an output size (even)."""
    x0, x1, y0, y1 = support_extent(HW_RANGE[1] * size)
    c = math.ceil(max(x1 - x0, y1 - y0)) + 2 * CROP_MARGIN
    return c + c % 2


CROP = {s: crop_side(s) for s in SIZES}


@dataclass
class PreparedFace:
    image: np.ndarray  # (size, size, 3) uint8: the framed photo every frame starts from
    size: int
    mouth: Mouth  # in framed-image pixels
    crop_box: tuple[int, int, int]  # x0, y0, side C of the mouth crop in the framed image
    crop_mouth: np.ndarray  # (4,) float32: cx, cy, half_width (crop px), angle (rad)
    face_box: tuple[int, int, int, int]  # x, y, w, h of the face used, in source pixels
    source: str  # the file, or "array"
    source_size: tuple[int, int]  # width, height of the source
    faces_found: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def crop(self) -> np.ndarray:
        """(C, C, 3) uint8 mouth crop of the framed photo (what the render graph takes)."""
        x0, y0, c = self.crop_box
        return self.image[y0: y0 + c, x0: x0 + c]

    def to_json(self) -> dict:
        return {"size": self.size, "source": self.source,
                "source_size": list(self.source_size), "face_box": list(self.face_box),
                "faces_found": self.faces_found, "crop_box": list(self.crop_box),
                "mouth": [round(float(v), 3) for v in self.mouth.as_array()],
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- reading

def read_photo(path) -> tuple[np.ndarray, tuple[int, int], float]:
    """A photo file -> (RGB uint8 at most MAX_WORK on its long side, (W, H) of the file,
    scale of the returned image relative to the file)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"face photo {str(p)!r} does not exist; expected {ACCEPTED}")
    try:
        with Image.open(p) as im:
            W, H = im.size
            if im.format == "JPEG":
                im.draft("RGB", (MAX_WORK, MAX_WORK))  # decode at 1/2, 1/4, 1/8 scale
            elif W * H > MAX_DECODE_MP * 1e6:
                raise InputError(f"face photo {str(p)!r} is {W}x{H} ({W * H / 1e6:.0f} MP); "
                                 f"at most {MAX_DECODE_MP} MP is accepted for "
                                 f"{im.format or 'this format'} (JPEG any size): downscale it")
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"face photo {str(p)!r} is too large ({W}x{H}); downscale it below "
                         f"{Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} MP") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"face photo {str(p)!r} is not a readable image "
                         f"({type(exc).__name__}); expected {ACCEPTED}") from None
    rgb = _limit(rgb)
    return rgb, (W, H), rgb.shape[1] / W


def _to_rgb(im) -> np.ndarray:
    """Any Pillow mode -> RGB uint8; transparency composited over white."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float grayscale
        a = np.asarray(im, np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), np.uint8).copy()


def _from_array(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise InputError(f"face photo array must be uint8 (0..255); got dtype {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        return (a[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    raise InputError(f"face photo array must be (H, W), (H, W, 3) or (H, W, 4); "
                     f"got shape {a.shape}")


def _limit(rgb: np.ndarray) -> np.ndarray:
    import cv2

    H, W = rgb.shape[:2]
    if max(H, W) <= MAX_WORK:
        return rgb
    s = MAX_WORK / max(H, W)
    return cv2.resize(rgb, (max(1, round(W * s)), max(1, round(H * s))),
                      interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- faces

def find_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h) in image pixels, largest first (searched on a copy of at
    most DETECT_SIDE pixels)."""
    import cv2

    H, W = rgb.shape[:2]
    s = min(1.0, DETECT_SIDE / max(H, W))
    small = rgb if s == 1.0 else cv2.resize(rgb, (round(W * s), round(H * s)),
                                            interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    min_px = max(24, math.ceil(MIN_FACE * s))
    boxes, _, weights = cascade().detectMultiScale3(
        gray, 1.1, 5, minSize=(min_px, min_px), outputRejectLevels=True)
    if len(boxes) == 0:
        return []
    # Weak detections (a fraction of the best's stage weight) are textures, not faces:
    # a larger false box must not win "the largest".
    w = np.asarray(weights, np.float64).reshape(-1)
    keep = [tuple(round(v / s) for v in b) for b, wt in zip(boxes, w)
            if wt >= 0.3 * w.max()]
    return sorted(keep, key=lambda b: -b[2] * b[3])


def _frame(rgb: np.ndarray, x0: float, y0: float, side: float, size: int):
    """Square [x0, x0+side) x [y0, y0+side) of rgb resized to size x size (edges repeated
    where it leaves the image) -> (framed, padded?)."""
    import cv2

    H, W = rgb.shape[:2]
    xi, yi, si = round(x0), round(y0), max(1, round(side))
    pad = (max(0, -yi), max(0, yi + si - H), max(0, -xi), max(0, xi + si - W))
    part = rgb[max(0, yi): min(H, yi + si), max(0, xi): min(W, xi + si)]
    if any(pad):
        part = cv2.copyMakeBorder(part, *pad, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if si > size else cv2.INTER_CUBIC
    out = cv2.resize(part, (size, size), interpolation=interp)
    return np.ascontiguousarray(out), any(pad), size / si, (xi, yi)


def _crop_box(m: Mouth, size: int) -> tuple[int, int, int]:
    """The CROP[size] square holding the renderer's support around mouth m, inside the
    frame (where the support leaves the frame, the frame's edge cuts it anyway)."""
    c = CROP[size]
    x0, x1, y0, y1 = support_extent(m.half_width)
    left = m.cx + (x0 + x1) / 2 - c / 2  # support box centred in the crop
    top = m.cy + (y0 + y1) / 2 - c / 2
    left = int(np.clip(round(left), 0, size - c))
    top = int(np.clip(round(top), 0, size - c))
    return left, top, c


def prepare_face(photo, size: int = 256) -> PreparedFace:
    """A photo (file path, or RGB/RGBA/grayscale uint8 array) -> PreparedFace for `size`."""
    if size not in SIZES:
        raise InputError(f"size must be one of {', '.join(map(str, SIZES))}; got {size!r}")
    notes: list[str] = []
    if isinstance(photo, (str, Path)):
        name = str(photo)
        rgb, (W0, H0), scale = read_photo(photo)
    else:
        name = "array"
        rgb = _limit(_from_array(photo))
        H0, W0 = np.asarray(photo).shape[:2]
        scale = rgb.shape[1] / W0
    if min(W0, H0) < MIN_FACE:
        raise InputError(f"face photo {name} is {W0}x{H0} px; a frontal photo with the face "
                         f"at least {MIN_FACE} px is needed")
    if scale < 1.0:
        notes.append(f"the photo ({W0}x{H0}) was downscaled to {rgb.shape[1]}x{rgb.shape[0]} "
                     f"before framing")
    faces = find_faces(rgb)
    if not faces:
        raise InputError(f"no frontal face found in {name}; a frontal photo with the face "
                         f"at least {MIN_FACE} px is needed")
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found; the largest used")
    box = faces[0]
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    m0 = mouth_in_face(rgb, gray, box)
    if m0 is None:
        notes.append("no lip colour on the face (grayscale or washed out): the mouth is "
                     "placed from the face box")
        m0 = geometric_mouth(box)
    hw = m0.half_width
    image = m = None
    padded = False
    for _ in range(2):  # frame, find the mouth again, re-frame once if it came out off-range
        # Frame side in source px: the mouth at HW_TARGET of it, the face not too tight or
        # too loose, and (what the static crop needs) the mouth within HW_RANGE.
        side = float(np.clip(hw / HW_TARGET, FACE_FRAME[0] * box[2], FACE_FRAME[1] * box[2]))
        side = float(np.clip(side, hw / HW_RANGE[1], hw / HW_RANGE[0]))
        x0, y0 = m0.cx - MOUTH_AT[0] * side, m0.cy - MOUTH_AT[1] * side
        image, padded, k, (xi, yi) = _frame(rgb, x0, y0, side, size)
        fbox = tuple(round(v) for v in ((box[0] - xi) * k, (box[1] - yi) * k,
                                             box[2] * k, box[3] * k))
        g2 = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        m = mouth_in_face(image, g2, fbox) or geometric_mouth(fbox)
        lo, hi = HW_RANGE[0] * size, HW_RANGE[1] * size
        if lo <= m.half_width <= hi:
            break
        hw = m.half_width / k  # the framed finder's width, in source pixels
    m = Mouth(m.cx, m.cy, float(np.clip(m.half_width, HW_RANGE[0] * size,
                                        HW_RANGE[1] * size)),
              float(np.clip(m.angle, -MAX_ROLL, MAX_ROLL)))
    if padded:
        notes.append("the face is near the photo's edge: the frame was filled by repeating "
                     "the edge pixels")
    if k > 2.0:
        notes.append(f"the face is small ({box[2] / scale:.0f} px): upscaled {k:.1f}x into "
                     f"the {size}x{size} frame, the video will be soft")
    cb = _crop_box(m, size)
    crop_mouth = np.array([m.cx - cb[0], m.cy - cb[1], m.half_width, m.angle], np.float32)
    src_box = tuple(round(v / scale) for v in box)
    return PreparedFace(image, size, m, cb, crop_mouth, src_box, name, (W0, H0), len(faces),
                        notes)
