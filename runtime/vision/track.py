"""Tracking the mouth through a video: where to cut each frame's ROI.

    >>> track = track_mouth(video.frames)                  # doctest: +SKIP
    >>> rois = crop_rois(video.frames, track)              # (F, 88, 88) uint8
    >>> track.interpolated                                 # frames where no face was found

Per frame (numpy + OpenCV, one core):
  - face: the Haar frontal-face cascade (avedge.runtime.vision.mouth). The first search
    scans the whole frame shrunk to DETECT_WIDTH pixels; later searches scan a window of
    SEARCH_MARGIN face widths around the last face, shrunk so that the face is FACE_PX
    pixels wide (the scale at which BOX_MOUTH was measured, so the box geometry does not
    depend on the video's resolution). A search runs every `detect_every` frames, and on
    any frame where the lips are not re-found;
  - lips: between searches, the lower-face box of the last detection moves with the mouth
    and the lips are re-found there by colour (Lab a*, as on a detection frame): cheap and
    independent of the mouth's opening. Grayscale sources have no lip colour: the mouth is
    the face box's geometric prior (BOX_MOUTH) and the face is searched on every frame
    (`finder` says "opencv-haar+face-geometry");
  - a frame where neither finds the face is lost: its mouth is interpolated between the
    neighbouring found frames (held at the clip's ends) and listed in `interpolated`.
Over time: the centre is split into the head's motion (head.py: the eyes and nose
matched frame to frame, sub-pixel; the jaw does not move them) and the mouth's offset from
the head. The head is median-filtered (MEDIAN_K frames, removes outliers) then averaged
(MEAN_K frames, centred, no lag); the offset, which only speech and slow pose changes
move, is averaged over OFFSET_K frames (1 s): the lips' centre drops as the jaw opens, and
a crop that followed it moved 1-3 ROI pixels with every syllable (60 corpus test clips,
shipped reader, video: 34.8 % WER with the lips' centre followed, 24.2 % split; a head
swaying 15 px at 0.5 Hz: 40.1 -> 26.7 %). Without a head match in most frames (a flat
upper face) the centre is smoothed as one (MEDIAN_K + MEAN_K). The scale is a robust
per-clip value: the median of the face-box widths of the detections
within +-SCALE_WINDOW frames. The face box, unlike the lips, does not grow as the mouth
opens, and the training ROI is framed on the CLOSED mouth's half-width.

Errors (InputError, one line): no face in any frame ("no face found in any of the 40
frames searched ..."); a face lost in more than half the frames (the message names the
lost ranges). Why half: past that, most ROIs would be guesses between a few found frames
and the lip reader would read the guesses; at or under half, gaps are short or few and
interpolation over them is what a slowly moving face allows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from avedge.runtime.errors import InputError
from avedge.runtime.vision.head import HeadMotion
from avedge.runtime.vision.mouth import (
    BOX_MOUTH,
    Mouth,
    _eye_roll,
    face_box,
    geometric_mouth,
    lip_pixels,
)

DETECT_EVERY = 10  # frames between face searches while the lips are tracked by colour
DETECT_WIDTH = 256  # a full-frame search scans the frame shrunk to this width
MIN_FACE_FRAC = 0.08  # smallest face searched, as a fraction of the frame's shorter side
FACE_PX = 64  # face width in the window a local search scans (~4 ms per search)
SEARCH_MARGIN = 0.6  # a local search window adds this many face widths on each side
MAX_STEP = 0.25  # a lip re-find that jumps more than this many face widths is refused
MAX_COAST = 3  # lips tracked by colour alone for at most MAX_COAST * detect_every frames
MEDIAN_K, MEAN_K = 7, 7  # centre smoothing windows, frames (0.28 s each at 25 fps)
OFFSET_K = 25  # the mouth's offset from the head is averaged over 1 s (see head.py)
SCALE_WINDOW = 50  # frames either side pooled for the robust scale (2 s at 25 fps)
COLOUR_MIN = 6  # a pixel with channels further apart than this (0..255) has colour
COLOUR_FRAC = 0.01  # a clip whose sampled frames have fewer colour pixels is grayscale


@dataclass
class MouthTrack:
    cx: np.ndarray  # (F,) float32 pixels, smoothed
    cy: np.ndarray
    half_width: np.ndarray  # (F,) float32: the robust closed-mouth scale
    angle: np.ndarray  # (F,) float32 radians (head roll; the ROI crop is axis-aligned)
    detected: np.ndarray  # (F,) bool: the mouth was found in this frame
    interpolated: list[int] = field(default_factory=list)  # lost frames, filled in
    finder: str = "opencv-haar+lip-colour"
    face_searches: int = 0  # Haar searches run (cost accounting)

    def __len__(self) -> int:
        return len(self.cx)

    def mouth(self, i: int) -> Mouth:
        return Mouth(float(self.cx[i]), float(self.cy[i]), float(self.half_width[i]),
                     float(self.angle[i]))


def track_mouth(frames: np.ndarray, *, detect_every: int = DETECT_EVERY) -> MouthTrack:
    """(F, H, W, 3) uint8 RGB frames -> MouthTrack (one entry per frame)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 \
            or len(frames) == 0:
        raise InputError(f"frames must be (F, H, W, 3) uint8 RGB with F >= 1, got shape "
                         f"{frames.shape} dtype {frames.dtype}")
    if int(detect_every) < 1:
        raise InputError(f"detect_every must be >= 1, got {detect_every!r}")
    colour = has_colour(frames)
    tracker = _Tracker(frames.shape[1:3], colour, int(detect_every))
    head = HeadMotion()
    raw = np.full((len(frames), 4), np.nan)  # cx, cy, angle, box-based half width
    heads = np.full((len(frames), 2), np.nan)  # the upper face's position
    for i, img in enumerate(frames):
        got = tracker.step(img)
        if got is not None:
            raw[i] = got
            h = head.step(img, tracker.box)
            if h is not None:
                heads[i] = h
    return _finish(raw, colour, tracker.searches, heads)


def has_colour(frames: np.ndarray) -> bool:
    """False for grayscale sources (video_io gives them as R = G = B), judged on up to 5
    frames spread over the clip, shrunk 4x (H.264 chroma noise stays under COLOUR_MIN)."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(5, len(frames))).astype(int))
    s = frames[idx, ::4, ::4].astype(np.int16)
    spread = s.max(-1) - s.min(-1)
    return bool((spread > COLOUR_MIN).mean() >= COLOUR_FRAC)


class _Tracker:
    """Per-frame state: the last face box, its roll, and where the mouth was in it."""

    def __init__(self, hw, colour: bool, detect_every: int):
        self.H, self.W = hw
        self.colour, self.every = colour, detect_every
        self.box = None  # (x, y, w, h) float, frame pixels, of the last detection
        self.angle = 0.0
        self.anchor = None  # mouth centre at the last detection
        self.last = None  # last found lip centre
        self.offset = (0.0, 0.0)  # mouth minus lip centre, from the last detection
        self.since = 0  # frames since the last successful face detection
        self.searches = 0
        self.min_face = max(20, int(MIN_FACE_FRAC * min(self.H, self.W)))

    def step(self, rgb: np.ndarray):
        """-> (cx, cy, angle, box half width) or None when the face is not found."""
        self.since += 1
        colour_ok = self.colour and self.last is not None \
            and self.since <= MAX_COAST * self.every
        if colour_ok and self.since < self.every:
            m = self._refind(rgb)
            if m is not None:
                return m
        if self._detect(rgb):
            return self._measure(rgb)
        if colour_ok:  # the search missed (e.g. a blink of the cascade): trust the lips
            return self._refind(rgb)
        self.last = None  # lost: the next frame searches again
        return None

    def _refind(self, rgb):
        x, y, w, h = self.box
        dx, dy = self.last[0] - self.anchor[0], self.last[1] - self.anchor[1]
        pts = lip_pixels(rgb, _int_box((x + dx, y + dy, w, h)))
        if pts is None:
            return None
        r = _lip_reference(pts)
        if np.hypot(r[0] - self.last[0], r[1] - self.last[1]) > MAX_STEP * w:
            return None
        self.last = r
        return r[0] + self.offset[0], r[1] + self.offset[1], self.angle, BOX_MOUTH[2] * w

    def _measure(self, rgb):
        g = geometric_mouth(self.box)
        pts = lip_pixels(rgb, _int_box(self.box)) if self.colour else None
        if pts is None:  # no lip colour: the box geometry alone
            self.anchor = self.last = None if self.colour else (g.cx, g.cy)
            self.offset = (0.0, 0.0)
            self.since = 0
            return g.cx, g.cy, self.angle, BOX_MOUTH[2] * self.box[2]
        # Lips and box geometry err independently (the lips with lighting and colour
        # casts, the box with the face's proportions): the mouth is their mean.
        lx, ly = pts.mean(0)
        mx, my = 0.5 * (g.cx + lx), 0.5 * (g.cy + ly)
        # Between detections the lip centroid moves the mouth (the upper lip's top edge
        # was tried as a reference the jaw cannot move: the reddest-pixel set's edge
        # jumps when the opening replaces lip pixels, 9-13 px errors against 2-5).
        r = _lip_reference(pts)
        self.offset = (mx - r[0], my - r[1])
        self.anchor = self.last = r
        self.since = 0
        return mx, my, self.angle, BOX_MOUTH[2] * self.box[2]

    def _detect(self, rgb) -> bool:
        """Search the face (near the last one if any, else the whole frame); refine a
        whole-frame hit by a local search at FACE_PX so box geometry is scale-free."""
        import cv2

        if self.box is not None and self._local(rgb, self.box):
            return True
        self.searches += 1
        f = max(1.0, self.W / DETECT_WIDTH)
        small = cv2.resize(rgb, (round(self.W / f), round(self.H / f)),
                           interpolation=cv2.INTER_AREA)
        box = face_box(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY),
                       min_size=max(20, int(self.min_face / f)))
        if box is None:
            return False
        coarse = tuple(v * f for v in box)
        if not self._local(rgb, coarse):
            self.box, self.angle = coarse, 0.0
        return True

    def _local(self, rgb, box) -> bool:
        import cv2

        self.searches += 1
        x, y, w, h = box
        x0, y0 = max(0, int(x - SEARCH_MARGIN * w)), max(0, int(y - SEARCH_MARGIN * h))
        x1 = min(self.W, int(np.ceil(x + (1 + SEARCH_MARGIN) * w)))
        y1 = min(self.H, int(np.ceil(y + (1 + SEARCH_MARGIN) * h)))
        f = w / FACE_PX
        win = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        size = (max(1, round((x1 - x0) / f)), max(1, round((y1 - y0) / f)))
        small = cv2.resize(win, size, interpolation=cv2.INTER_AREA if f > 1
                           else cv2.INTER_LINEAR)
        found = face_box(small, min_size=int(FACE_PX / 1.25), max_size=int(FACE_PX * 1.25))
        if found is None:
            return False
        if self.since >= self.every or self.box is None:  # the roll changes slowly
            self.angle = _eye_roll(small, *found)
        fx, fy = (x1 - x0) / size[0], (y1 - y0) / size[1]
        bx, by, bw, bh = found
        self.box = (x0 + bx * fx, y0 + by * fy, bw * fx, bh * fy)
        return True


def _lip_reference(pts: np.ndarray) -> tuple[float, float]:
    c = pts.mean(0)
    return float(c[0]), float(c[1])


def _int_box(box):
    x, y, w, h = (round(float(v)) for v in box)
    return x, y, max(1, w), max(1, h)


def _finish(raw: np.ndarray, colour: bool, searches: int,
            heads: np.ndarray | None = None) -> MouthTrack:
    F = len(raw)
    found = ~np.isnan(raw[:, 0])
    if not found.any():
        raise InputError(f"no face found in any of the {F} frames searched; expected a "
                         "frontal face (both eyes visible, not in profile) in the video")
    lost = np.flatnonzero(~found)
    if len(lost) * 2 > F:
        raise InputError(f"face lost in {len(lost)} of {F} frames ({_ranges(lost)}, "
                         "0-based): more than half the video; expected a frontal face "
                         "visible in most frames")
    t, idx = np.arange(F), np.flatnonzero(found)
    filled = np.stack([np.interp(t, idx, raw[idx, j]) for j in range(4)], 1)
    on = [] if heads is None else np.flatnonzero(found & ~np.isnan(heads[:, 0]))
    if len(on) * 2 > len(idx):  # the head matched in most found frames: head + offset
        head = np.stack([np.interp(t, on, heads[on, j]) for j in range(2)], 1)
        cx, cy = (_smooth(head[:, j]) + _smooth(filled[:, j] - head[:, j], OFFSET_K, "even")
                  for j in range(2))
    else:
        cx, cy = (_smooth(filled[:, j]) for j in range(2))
    # Robust scale and roll: medians over the detections near each frame.
    hw = _windowed_median(idx, raw[idx, 3], F)
    angle = _windowed_median(idx, raw[idx, 2], F)
    return MouthTrack(cx.astype(np.float32), cy.astype(np.float32), hw.astype(np.float32),
                      angle.astype(np.float32), found, [int(i) for i in lost],
                      "opencv-haar+lip-colour" if colour else "opencv-haar+face-geometry",
                      searches)


def _smooth(x: np.ndarray, mean_k: int = MEAN_K, ends: str = "odd") -> np.ndarray:
    """Running median then running mean (mean_k frames), centred. Ends padded by odd
    reflection (a steady drift continues through the ends instead of flattening: a
    position) or even reflection (the ends average like the middle: a quantity that
    only oscillates, like the mouth's offset from the head)."""
    if len(x) < 3:
        return x
    for k, op in ((MEDIAN_K, np.median), (mean_k, np.mean)):
        r = k // 2
        p = np.pad(x, r, mode="reflect", reflect_type=ends) if len(x) > r \
            else np.pad(x, r, mode="edge")
        x = op(np.lib.stride_tricks.sliding_window_view(p, k), axis=1)
    return x


def _windowed_median(idx: np.ndarray, values: np.ndarray, F: int) -> np.ndarray:
    """Median of `values` (measured at frames `idx`) within +-SCALE_WINDOW frames of each
    measurement, interpolated to all F frames: follows slow changes, ignores outliers."""
    med = np.array([np.median(values[np.abs(idx - i) <= SCALE_WINDOW]) for i in idx])
    return np.interp(np.arange(F), idx, med)


def _ranges(frames: np.ndarray, most: int = 8) -> str:
    """[3, 4, 5, 9] -> 'frames 3-5, 9'."""
    runs, start = [], frames[0]
    for a, b in itertools.pairwise(frames):
        if b != a + 1:
            runs.append((start, a))
            start = b
    runs.append((start, frames[-1]))
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:most]]
    more = f", ... ({len(runs) - most} more)" if len(runs) > most else ""
    return "frames " + ", ".join(text) + more
