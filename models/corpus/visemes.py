"""Phonemes -> visemes -> a 12-dim lips-pose vector per 25 fps video frame.

Coarticulation: Cohen & Massaro's dominance model. Each phone has a target pose and a
dominance exp(-|t - centre| / tau) * strength; a frame's pose is the dominance-weighted
mean of all targets. Bilabials (p b m) get high strength and short tau so the lips
really close even between open vowels; schwa and /h/ are weak and take their
neighbours' shape. Silence pulls towards the rest pose (mouth closed, relaxed).

Every dimension is in [0, 1]; REST is the neutral closed mouth.
"""

from __future__ import annotations

import numpy as np

FPS = 25
# Articulators move ahead of the sound: the mouth reaches a phone's shape ~25 ms before
# its acoustic onset (anticipatory coarticulation). Without this lead the jaw trailed
# the audio energy envelope by 0.5-0.8 frame on every synthesizer (measured on espeak,
# piper and Kokoro banks; aggregate envelope/jaw cross-correlation peak).
ANTICIPATION_S = 0.025
DIMS = (
    "jaw_open",            # 0 jaw drop: 0 closed .. 1 wide open
    "mouth_width",         # 1 corner-to-corner width: 0 narrow (rounded) .. 1 spread
    "upper_lip_raise",     # 2 upper lip lifted off the teeth
    "lower_lip_drop",      # 3 lower lip lowered beyond the jaw
    "lip_rounding",        # 4 corners pulled in to a round opening
    "lip_protrusion",      # 5 lips pushed forward
    "upper_teeth",         # 6 upper teeth visibility
    "lower_teeth",         # 7 lower teeth visibility
    "tongue",              # 8 tongue tip visible (th, l)
    "lip_closure",         # 9 lips pressed together (p b m)
    "lower_lip_tuck",      # 10 lower lip under the upper teeth (f v)
    "corner_raise",        # 11 corners lifted (spread vowels, smile)
)
N_DIMS = len(DIMS)
REST = np.array([0.02, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.1], np.float32)


def _p(**kw) -> np.ndarray:
    v = REST.copy()
    v[9] = 0.0
    for k, x in kw.items():
        v[DIMS.index(k)] = x
    return v


# viseme -> (target pose, strength, tau seconds)
VISEMES = {
    "sil": (REST, 0.6, 0.06),
    "PP": (_p(jaw_open=0.0, lip_closure=1.0, mouth_width=0.45), 8.0, 0.035),
    "FF": (_p(jaw_open=0.12, lower_lip_tuck=1.0, upper_teeth=0.8, upper_lip_raise=0.3), 5.0, 0.04),
    "TH": (_p(jaw_open=0.2, tongue=0.9, upper_teeth=0.6, lower_teeth=0.4), 3.0, 0.04),
    "DD": (_p(jaw_open=0.22, upper_teeth=0.5, lower_teeth=0.3, tongue=0.2), 1.5, 0.05),
    "kk": (_p(jaw_open=0.28, upper_teeth=0.3, lower_teeth=0.2), 1.0, 0.05),
    "CH": (_p(jaw_open=0.18, lip_rounding=0.6, lip_protrusion=0.8, upper_teeth=0.7,
              lower_teeth=0.6, mouth_width=0.35), 3.0, 0.05),
    "SS": (_p(jaw_open=0.1, upper_teeth=0.8, lower_teeth=0.7, mouth_width=0.6), 2.5, 0.045),
    "nn": (_p(jaw_open=0.18, upper_teeth=0.3, tongue=0.3), 1.0, 0.05),
    "RR": (_p(jaw_open=0.2, lip_rounding=0.5, lip_protrusion=0.5, mouth_width=0.35), 2.0, 0.05),
    "aa": (_p(jaw_open=0.85, lower_lip_drop=0.4, upper_lip_raise=0.2, upper_teeth=0.5,
              lower_teeth=0.2, mouth_width=0.6), 1.5, 0.07),
    "E": (_p(jaw_open=0.5, lower_lip_drop=0.2, upper_teeth=0.5, lower_teeth=0.3,
             mouth_width=0.62, corner_raise=0.3), 1.2, 0.07),
    "ih": (_p(jaw_open=0.3, upper_teeth=0.7, lower_teeth=0.5, mouth_width=0.8,
              corner_raise=0.6), 1.2, 0.06),
    "oh": (_p(jaw_open=0.6, lip_rounding=0.8, lip_protrusion=0.5, mouth_width=0.25,
              lower_lip_drop=0.2), 1.5, 0.07),
    "ou": (_p(jaw_open=0.22, lip_rounding=1.0, lip_protrusion=0.9, mouth_width=0.1), 2.5, 0.06),
    "schwa": (_p(jaw_open=0.35, upper_teeth=0.3, lower_teeth=0.2), 0.4, 0.05),
    "hh": (_p(jaw_open=0.3), 0.2, 0.05),
}

# First IPA characters -> viseme (longest match first; diphthongs take their onset, the
# glide is a second phone from piper or handled by the "end" rule below).
IPA = {
    "p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF", "θ": "TH", "ð": "TH",
    "t": "DD", "d": "DD", "ɾ": "DD", "l": "DD", "n": "nn", "ŋ": "kk", "k": "kk", "ɡ": "kk",
    "g": "kk", "x": "kk", "ʔ": "kk", "tʃ": "CH", "dʒ": "CH", "ʃ": "CH", "ʒ": "CH",
    "s": "SS", "z": "SS", "ɹ": "RR", "r": "RR", "ɚ": "RR", "ɝ": "RR", "w": "ou", "j": "ih",
    "h": "hh", "a": "aa", "ɑ": "aa", "æ": "aa", "ʌ": "aa", "ɐ": "schwa", "ə": "schwa",
    "ᵻ": "ih", "ɛ": "E", "e": "E", "ɜ": "E", "ɪ": "ih", "i": "ih", "ɔ": "oh", "o": "oh",
    "ɒ": "oh", "u": "ou", "ʊ": "ou", "ʉ": "ou", "y": "ou",
}
# Diphthong glides: (onset, offset) visemes, the offset takes the last 40 % of the phone.
DIPHTHONGS = {"eɪ": ("E", "ih"), "aɪ": ("aa", "ih"), "ɔɪ": ("oh", "ih"), "aʊ": ("aa", "ou"),
              "oʊ": ("oh", "ou"), "əʊ": ("schwa", "ou"), "ɪə": ("ih", "schwa"),
              "eə": ("E", "schwa"), "ʊə": ("ou", "schwa"), "əl": ("schwa", "DD")}


def viseme_of(ph: str) -> str:
    for k in (ph[:2], ph[:1]):
        if k in IPA:
            return IPA[k]
    return "schwa"


def to_visemes(phones) -> list[tuple[str, float, float]]:
    """[[ph, start, end], ...] -> [(viseme, start, end), ...] (diphthongs split in two)."""
    out = []
    for ph, s, e in phones:
        if ph in DIPHTHONGS:
            a, b = DIPHTHONGS[ph]
            m = s + 0.6 * (e - s)
            out += [(a, s, m), (b, m, e)]
        else:
            out.append((viseme_of(ph), s, e))
    return out


def lips_pose(phones, n_frames: int, fps: int = FPS, offset: float = 0.0,
              time_scale: float = 1.0) -> np.ndarray:
    """-> (n_frames, 12) float32. Phone times are multiplied by time_scale and shifted by
    `offset` seconds (a speed-perturbed utterance placed in a window)."""
    vis = to_visemes(phones)
    t = (np.arange(n_frames) + 0.5) / fps + ANTICIPATION_S  # (F,) frame centres, led
    if not vis:
        return np.tile(REST, (n_frames, 1))
    # Silence before, between (gaps > 60 ms) and after phones is a "sil" segment.
    segs, last = [], -1.0
    for v, s, e in vis:
        s, e = s * time_scale + offset, e * time_scale + offset
        if s - last > 0.06:
            segs.append(("sil", max(last, s - 0.3), s))
        segs.append((v, s, e))
        last = e
    segs.append(("sil", last, last + 0.3))
    targets = np.stack([VISEMES[v][0] for v, _, _ in segs])  # (P, 12)
    strength = np.array([VISEMES[v][1] for v, _, _ in segs])  # (P,)
    tau = np.array([VISEMES[v][2] for v, _, _ in segs])
    start = np.array([s for _, s, _ in segs])
    end = np.array([e for _, _, e in segs])
    centre = 0.5 * (start + end)
    half = 0.5 * (end - start)
    # Distance outside the phone's own span (0 inside): dominance is flat inside.
    dist = np.maximum(np.abs(t[:, None] - centre[None, :]) - half[None, :], 0.0)  # (F, P)
    dom = strength[None, :] * np.exp(-dist / tau[None, :])
    far = np.all(dist > 0.5, axis=1)  # frames far from any segment: rest
    dom[far] = 0.0
    w = dom.sum(1, keepdims=True)
    pose = np.where(w > 1e-6, dom @ targets / np.maximum(w, 1e-6), REST[None, :])
    return pose.astype(np.float32)
