"""avedge lipsync --face IMG --audio WAV --out OUT.mp4 [--size 256|512]
[--backend onnxruntime|executorch] [--pose-artifact DIR] [--render-artifact DIR]
[--threads N] [--json]

Make a photo speak: the face is found and framed (size x size), stage 2 turns the audio
into lips-pose vectors at 25 fps over overlapping, cross-faded windows, stage 1 renders
each pose on the mouth crop and pastes it into the framed photo; the video is H.264 at
25 fps with the audio muxed in (AAC). Audio is decoded, rendered and encoded as it
streams: hours of audio run in the memory of one window. The mp4 appears only when it is
complete (written to a hidden temporary file beside it, renamed into place).

Without --pose-artifact / --render-artifact, the shipped lips-pose weights and the face
renderer are exported once for the `cpu` target and cached (~/.cache/avedge/artifacts).

Input handling: any photo Pillow reads (PNG, JPEG, WebP, BMP, TIFF; grayscale, RGBA over
white, palette; EXIF rotation; huge JPEGs decoded at a reduced scale); several faces: the
largest (said in the notes); any audio FFmpeg reads (wav, flac, ogg, mp3, m4a), any
rate and channels (mixed to mono, resampled to 16 kHz); silence gives a closed mouth.
Refused with a one-line error (exit code 2), leaving no mp4: no frontal face (or a face
under 48 px), an unreadable photo, a missing/corrupt/empty audio file, an output folder
that does not exist or is not writable, an output name that is not .mp4/.mov/.mkv,
--size other than 256 or 512, an artifact of the wrong kind.

--json prints: frames, fps (25), fps_compute (frames per second of compute: stage 2 +
stage 1 + paste, decoding and encoding excluded), ms {pose, render, paste} (totals) and
ms_per_frame, windows, seconds (wall, everything), audio_s, size, face {notes,
face_box, faces_found, crop_box, mouth, source_size}, artifacts {pose, render}, backend,
out.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from pathlib import Path

from avedge.cli.common import print_json, quiet_native_logs

POSE_FAMILY = "lips-pose"
RENDER_FAMILY = "face-renderer"
BACKENDS = ("onnxruntime", "executorch")
SIZES = ("256", "512")


def register(sub):
    p = sub.add_parser("lipsync", help="make a face photo speak an audio file (mp4)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", required=True, metavar="IMG", help="photo with a frontal face")
    p.add_argument("--audio", required=True, metavar="WAV", help="speech audio file")
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="video to write")
    p.add_argument("--size", default="256", metavar="256|512",
                   help="output frame side in pixels (default 256)")
    p.add_argument("--backend", metavar="B",
                   help="onnxruntime or executorch (default: onnxruntime where installed, "
                        "else the artifact's first available)")
    p.add_argument("--pose-artifact", metavar="DIR",
                   help="lips-pose artifact (default: the shipped weights, exported for cpu)")
    p.add_argument("--render-artifact", metavar="DIR",
                   help="face-renderer artifact (default: exported for cpu)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="intra-op threads per graph (default 1: on the 2-core dev VM one "
                        "thread ran these small graphs ~2x faster than two)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def renderer_artifact(target: str = "cpu") -> Path:
    """The face renderer exported for `target`, cached by a hash of its code and of the
    framing constants (it has no weights to hash)."""
    from avedge.api import export
    from avedge.models import face_renderer as FR
    from avedge.runtime.fsutil import build_lock
    from avedge.runtime.manifest import FORMAT_VERSION

    h = hashlib.sha256(Path(FR.__file__).read_bytes())
    h.update(repr(sorted(FR.manifest_extra().items())).encode())
    out = (Path.home() / ".cache" / "avedge" / "artifacts"
           / f"{RENDER_FAMILY}-{target}-v{FORMAT_VERSION}-{h.hexdigest()[:12]}")
    with build_lock(out):
        if not (out / "manifest.json").exists():
            print(f"exporting the face renderer for target {target} once (cached at {out})",
                  file=sys.stderr)
            export(RENDER_FAMILY, target, out)
    return out


def run(args) -> int:
    quiet_native_logs()
    from avedge.runtime.errors import InputError

    if args.size not in SIZES:
        raise InputError(f"--size must be 256 or 512; got {args.size!r}")
    if args.backend is not None and args.backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}; got "
                         f"{args.backend!r}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1; got {args.threads}")
    backend = args.backend
    if backend is None and importlib.util.find_spec("onnxruntime") is not None:
        backend = "onnxruntime"  # the render graph runs ~1.1-2x faster there than in .pte
    res = lipsync(args.face, args.audio, args.out, size=int(args.size), backend=backend,
                  pose_artifact=args.pose_artifact, render_artifact=args.render_artifact,
                  threads=args.threads)
    if args.json:
        print_json(res)
        return 0
    ms = res["ms_per_frame"]
    print(f"{res['out']}: {res['frames']} frames at {res['size']}x{res['size']}, "
          f"{res['fps_compute']:.1f} FPS compute (per frame: pose {ms['pose']:.2f} ms, "
          f"render {ms['render']:.2f} ms, paste {ms['paste']:.2f} ms; {res['backend']})")
    for note in res["face"]["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def lipsync(face_path, audio_path, out, *, size: int = 256, backend: str | None = None,
            pose_artifact=None, render_artifact=None, threads: int | None = None) -> dict:
    """The whole command as a function: -> the --json dict."""
    from avedge.runtime.pipelines.lipsync import LipSync, stream_audio
    from avedge.runtime.video_io import VideoWriter
    from avedge.runtime.vision.face_photo import prepare_face

    t_start = time.perf_counter()
    out = Path(out)
    # Refuse a bad output and a bad photo before anything slow (an export, the audio).
    writer = VideoWriter(out, 25, (size, size), audio_rate=16000)
    try:
        face = prepare_face(face_path, size)
        audio = stream_audio(audio_path, 16000)
        first = next(audio)  # missing / unreadable / empty audio fails here
        if pose_artifact is None:
            from avedge.cli.common import default_artifact
            from avedge.models.registry import get_family
            from avedge.runtime.errors import AvedgeError

            w = get_family(POSE_FAMILY).weights["default"]
            if not Path(w).is_file():
                raise AvedgeError(f"no shipped lips-pose weights at {w}; train them (`avedge "
                                  f"train lips-pose`) or pass --pose-artifact DIR")
            pose_artifact = default_artifact(POSE_FAMILY, "cpu")
        if render_artifact is None:
            render_artifact = renderer_artifact("cpu")
        engine = LipSync(pose_artifact, render_artifact, face, backend=backend, mode="file",
                         threads=threads)
        if engine.fps != 25 or engine.rate != 16000:
            from avedge.runtime.errors import ArtifactError

            raise ArtifactError(f"{pose_artifact}: {engine.fps} fps at {engine.rate} Hz; this "
                                f"command writes 25 fps video with 16 kHz audio")
        encode_ms = 0.0

        def emit(frames):
            nonlocal encode_ms
            t0 = time.perf_counter()
            for f in frames:
                writer.write(f.rgb)
            encode_ms += (time.perf_counter() - t0) * 1e3

        for chunk in _chain(first, audio):
            emit(engine.push(chunk))
            t0 = time.perf_counter()
            writer.write_audio(chunk)
            encode_ms += (time.perf_counter() - t0) * 1e3
        emit(engine.flush())
        writer.close()
    except BaseException:
        writer.abort()
        raise
    st = engine.stats
    n = st["frames"]
    compute_ms = sum(st["ms"].values())
    return {
        "out": str(out),
        "frames": n,
        "fps": 25,
        "fps_compute": round(n / (compute_ms / 1e3), 1) if compute_ms > 0 else None,
        "ms": st["ms"],
        "ms_per_frame": {k: round(v / max(1, n), 3) for k, v in st["ms"].items()},
        "encode_ms": round(encode_ms, 1),
        "windows": st["windows"],
        "window_frames": st["window_frames"],
        "hop_frames": st["hop_frames"],
        "seconds": round(time.perf_counter() - t_start, 2),
        "audio_s": st["audio_s"],
        "size": size,
        "face": face.to_json(),
        "artifacts": {"pose": str(pose_artifact), "render": str(render_artifact)},
        "backend": st["backend"],
    }


def _chain(first, rest):
    yield first
    yield from rest
