"""Face/ROI stage cost per frame on one core: face detection, tracking, ROI crop.

    .venv/bin/python benchmarks/bench_face_roi.py [--frames 100] [--video corpus.mp4]

Rendered 512x512 frames (the corpus video size: a corpus face variation speaking a
sentence) and, with --video, a real file read by runtime.video_io. The process is pinned
to one core and OpenCV to one thread. Prints wall and CPU (process) milliseconds per
frame; on a busy machine the CPU figure is the closer one to a quiet core's wall time.
  detection  the corpus finder (full-frame Haar + lips + eyes) on every frame, for scale
  tracking   track_mouth (a face search every --detect-every frames, lips in between)
  crop       crop_rois (88x88 grayscale)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from avedge.sweep.machine import cpu_model


def _timed(fn, n: int):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w) / n * 1e3, (time.process_time() - c) / n * 1e3


def bench(name: str, frames: np.ndarray, detect_every: int, detection: bool = True) -> None:
    from avedge.runtime.vision.mouth import detect_mouth
    from avedge.runtime.vision.roi import crop_rois
    from avedge.runtime.vision.track import track_mouth

    F = len(frames)
    print(f"{name}: {F} frames {frames.shape[2]}x{frames.shape[1]}")
    if detection:
        k = min(F, 20)
        _, w, c = _timed(lambda: [detect_mouth(f) for f in frames[:k]], k)
        print(f"  detection (full frame, every frame) {w:7.2f} ms/frame wall {c:7.2f} cpu")
    track, w, c = _timed(lambda: track_mouth(frames, detect_every=detect_every), F)
    print(f"  tracking  (detect_every={detect_every:<2})        {w:7.2f} ms/frame wall {c:7.2f} "
          f"cpu  [{track.finder}, {track.face_searches} face searches, "
          f"{len(track.interpolated)} frames interpolated]")
    _, w2, c2 = _timed(lambda: crop_rois(frames, track), F)
    print(f"  crop                                {w2:7.2f} ms/frame wall {c2:7.2f} cpu")
    print(f"  face/ROI stage (tracking + crop)    {w + w2:7.2f} ms/frame wall {c + c2:7.2f} cpu")


def rendered(n: int, seed: int) -> np.ndarray:
    from avedge.models.corpus.face import FaceVariation
    from avedge.models.corpus.render import make_speaker, render_frames
    from avedge.models.corpus.visemes import lips_pose

    words = ("b", "ɪ", "n", "b", "l", "u", "æ", "t", "f", "t", "u", "n", "aʊ", "s", "ɛ", "t",
             "ɹ", "ɛ", "d", "w", "ɪ", "θ", "z", "ɛ", "ɹ", "oʊ", "p", "l", "iː", "z")
    phones = [[p, 0.2 + 0.09 * i, 0.29 + 0.09 * i] for i, p in enumerate(words)]
    sp = make_speaker(FaceVariation.sample(np.random.default_rng(seed)))
    return np.stack(list(render_frames(sp, lips_pose(phones, n))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--detect-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--video", help="a real video (e.g. a corpus mp4) to time as well")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"machine: {os.cpu_count()} cpus ({cpu_model()}), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; pinned to one core, "
          f"OpenCV {cv2.__version__} 1 thread")
    frames = rendered(args.frames, args.seed)
    bench("rendered corpus face", frames, args.detect_every)
    gray = np.repeat(cv2.cvtColor(frames.reshape(-1, frames.shape[2], 3),
                                  cv2.COLOR_RGB2GRAY).reshape(frames.shape[:3])[..., None], 3, 3)
    bench("same frames, grayscale", gray, args.detect_every, detection=False)
    if args.video:
        from avedge.runtime.video_io import read_video

        bench(args.video, read_video(args.video).frames, args.detect_every)


if __name__ == "__main__":
    main()
