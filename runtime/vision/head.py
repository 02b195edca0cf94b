"""Where the head is in each frame, from the part of the face the jaw does not move.

The mouth tracker (track.py) re-finds the lips by colour in every frame, and the lips'
centre moves with speech: down as the jaw opens, back as it closes, 1-3 ROI pixels at
3-8 Hz. A lip reader trained on ROIs framed on a still mouth reads that motion as
articulation: on 60 corpus test clips (static heads) the shipped reader read 34.8 % WER
through the tracker and 25.4 % with the track averaged over 1 s - but a 1 s average
cannot follow a moving head (15 px of sway at 0.5 Hz: 40.1 -> 59.9 %). So the track is
split in two: the head's motion, measured here on the eyes and nose (template matching,
sub-pixel), followed frame by frame; and the mouth's offset from it, which only speech
and slow pose changes move, averaged over OFFSET_K frames (track.py).

The template is the upper face of the last face detection (box fractions UPPER_FACE),
shrunk so the face is FACE_PX pixels wide; it is taken again when the face's size
changes or the match weakens, and the positions stay continuous across a new template
(the old one's match in that frame carries the offset over).
"""

from __future__ import annotations

import numpy as np

UPPER_FACE = (0.15, 0.85, 0.15, 0.6)  # x0, x1, y0, y1 as fractions of the face box
FACE_PX = 128  # face width at which templates are matched (sub-pixel at 512 px frames)
SEARCH = 0.25  # search margin around the last match, face widths
MIN_SCORE = 0.6  # a weaker normalised correlation is no match
RETAKE_SCORE = 0.8  # below this (or the face 10 % larger or smaller), a new template
RETAKE_SCALE = 0.1


class HeadMotion:
    """step(rgb, face box) per frame -> (x, y) head position in frame pixels, or None."""

    def __init__(self):
        self.tmpl = None  # float32 (h, w) at FACE_PX scale
        self.f = 1.0  # frame pixels per template pixel
        self.at = None  # last matched top-left, frame pixels
        self.off = np.zeros(2)  # added to match positions: continuity across templates

    def step(self, rgb: np.ndarray, box) -> tuple[float, float] | None:
        if box is None:
            return None
        got = self._match(rgb) if self.tmpl is not None else None
        if got is None or got[1] < RETAKE_SCORE \
                or abs(box[2] / FACE_PX / self.f - 1) > RETAKE_SCALE:
            before = None if got is None or got[1] < MIN_SCORE else got[0] + self.off
            if self._take(rgb, box):
                if before is not None:  # the new template continues the old positions
                    self.off = before - self.at
                got = (self.at.copy(), 1.0)
        if got is None or got[1] < MIN_SCORE:
            return None
        self.at = got[0]
        p = got[0] + self.off
        return float(p[0]), float(p[1])

    def _gray(self, rgb, x0, y0, x1, y1, f):
        import cv2

        win = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        interp = cv2.INTER_AREA if f > 1 else cv2.INTER_LINEAR
        # A scale factor, not a size: pixel i of the result is then exactly frame
        # x0 + i * f (a size rounded to whole pixels would bias positions by a fraction).
        return cv2.resize(win, None, fx=1 / f, fy=1 / f, interpolation=interp).astype(np.float32)

    def _take(self, rgb, box) -> bool:
        H, W = rgb.shape[:2]
        x, y, w, h = box
        x0, x1 = int(x + UPPER_FACE[0] * w), int(x + UPPER_FACE[1] * w)
        y0, y1 = int(y + UPPER_FACE[2] * h), int(y + UPPER_FACE[3] * h)
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            return False  # the face runs off the frame: keep the old template
        f = w / FACE_PX
        t = self._gray(rgb, x0, y0, x1, y1, f)
        if min(t.shape) < 8 or float(t.std()) < 2.0:
            return False  # too small or flat to match
        self.tmpl, self.f, self.at = t, f, np.array([x0, y0], np.float64)
        return True

    def _match(self, rgb):
        """-> (top-left (2,) frame pixels, score) of the template near its last place."""
        import cv2

        H, W = rgb.shape[:2]
        th, tw = self.tmpl.shape
        m = SEARCH * FACE_PX * self.f
        x0, y0 = max(0, int(self.at[0] - m)), max(0, int(self.at[1] - m))
        x1 = min(W, int(np.ceil(self.at[0] + tw * self.f + m)))
        y1 = min(H, int(np.ceil(self.at[1] + th * self.f + m)))
        region = self._gray(rgb, x0, y0, x1, y1, self.f)
        if region.shape[0] <= th or region.shape[1] <= tw:
            return None
        r = cv2.matchTemplate(region, self.tmpl, cv2.TM_CCOEFF_NORMED)
        _, score, _, (i, j) = cv2.minMaxLoc(r)
        dx, dy = _peak(r[j, max(0, i - 1): i + 2]), _peak(r[max(0, j - 1): j + 2, i])
        return np.array([x0 + (i + dx) * self.f, y0 + (j + dy) * self.f]), float(score)


def _peak(v: np.ndarray) -> float:
    """Sub-pixel offset of a correlation peak from its three samples (parabola); 0 at
    the search window's edge."""
    if len(v) != 3:
        return 0.0
    d = v[0] - 2 * v[1] + v[2]
    return float(np.clip(0.5 * (v[0] - v[2]) / d, -0.5, 0.5)) if d < 0 else 0.0
