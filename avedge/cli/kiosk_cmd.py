"""avedge kiosk --face IMG [--input mic|FILE.wav] [--out OUT.mp4] [--serve [HOST:PORT]]
[--size 256|512] [--seconds N] [--json]

Real-time lip sync: audio in -> frames of the photo speaking it, as the audio arrives. The
input is the microphone (pyaudio, 16 kHz mono, 20 ms chunks, opened as `avedge listen`
opens it) or a sound file delivered at real-time pace (20 ms chunks at their wall-clock
time), so a file behaves like a microphone. The engine is the lip-sync task in live mode
(small hops, bounded latency); frames go to the display page (--serve), to an mp4 with the
audio (--out, written atomically: never half-written) or nowhere (a latency benchmark).

Latency of frame i = when it is ready (and, with --serve, shown in the page) minus when the
audio at its end ((i+1)/25 s) arrived. When the engine falls behind, the loop skips whole
frames of the oldest waiting audio rather than drift (`--max-backlog-ms`, default 120); the
skipped frames are counted (`dropped`, `dropped_per_minute`) and the mp4 repeats the
previous picture for them. Malformed audio (NaN, wrong dtype, empty, gaps) is repaired and
counted in `input`, never fatal.

--serve [HOST:PORT] (default 127.0.0.1:8765; port 0 = any free port): the kiosk display,
a page for a full-screen browser (e.g. `chromium --kiosk --autoplay-policy=no-user-gesture-
required URL`) that plays the audio and shows each frame at its sound's time, with a status
line (connected, fps, latency, A/V offset). Loopback unless a HOST is given; any other host
(0.0.0.0 included) is served with a warning. With a file input the kiosk waits for the
first page to connect (--no-wait: start at once) and, at the end, up to --linger s for the
pages to play out and report.

--json prints at the end: frames, dropped, dropped_per_minute, audio_seconds, latency_ms
{median, p95, max, min, n}, stage_ms_per_frame (engine stages, push = the engine's call per
frame), input (chunks and repairs), size, input_source, out, notes, and with --serve `page`
{url, report_endpoint, display_latency_ms (audio arrived -> frame on screen, measured by
the page), av_offset_ms (frame on screen vs its sound being heard), reports per viewer}.

Errors (one line, exit 2): no face in the photo, an unreadable photo or sound file, no
microphone or no pyaudio, an --out the video writer cannot write, a port in use.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from avedge.cli.common import print_json, quiet_native_logs

RATE = 16000
CHUNK_MS = 20


def register(sub):
    p = sub.add_parser("kiosk", help="real time: audio in -> the photo speaking it (page, mp4)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", required=True, help="photo of a frontal face (PNG, JPEG, ...)")
    p.add_argument("--input", default="mic",
                   help="'mic' (default) or a sound file played at real-time pace")
    p.add_argument("--out", help="also write the frames with their audio to this mp4")
    p.add_argument("--serve", nargs="?", const="", metavar="HOST:PORT",
                   help="serve the kiosk page (default 127.0.0.1:8765)")
    p.add_argument("--size", type=int, default=256, choices=(256, 512),
                   help="frame side in pixels (default 256)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: the end of "
                                                 "the file, or Ctrl-C)")
    p.add_argument("--pose-artifact", help="lips-pose artifact (default: shipped, cpu)")
    p.add_argument("--render-artifact", help="face-renderer artifact (default: cpu export)")
    p.add_argument("--backend", help="backend (default: the artifacts' first available)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads per graph (default: the artifact's target)")
    p.add_argument("--input-device", type=int, help="PortAudio input device index (mic)")
    p.add_argument("--hop", type=int, default=1,
                   help="frames between pose windows (default 1: lowest latency; 2 halves "
                        "the pose cost on a slow machine for ~20 ms more latency)")
    p.add_argument("--max-backlog-ms", type=float, default=120.0,
                   help="audio allowed to wait for the engine before frames are skipped "
                        "(default 120)")
    p.add_argument("--no-wait", action="store_true",
                   help="with --serve and a file: start without waiting for a page")
    p.add_argument("--linger", type=float, default=5.0,
                   help="with --serve: seconds to wait at the end for pages to finish "
                        "(default 5)")
    p.add_argument("--json", action="store_true", help="print the final stats as JSON")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- inputs

@contextlib.contextmanager
def _quiet_stderr():
    """PortAudio's ALSA/JACK probing writes pages of noise to fd 2 when it starts."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_microphone(device: int | None):
    """-> (pyaudio module, PyAudio instance) when there is a microphone to open, else
    AvedgeError naming the device problem (said before the models load)."""
    from avedge.cli.listen_cmd import _pyaudio
    from avedge.runtime.errors import AvedgeError

    pyaudio = _pyaudio()
    with _quiet_stderr():
        pa = pyaudio.PyAudio()
    inputs = [i for i in range(pa.get_device_count())
              if pa.get_device_info_by_index(i)["maxInputChannels"] > 0]
    if not inputs:
        pa.terminate()
        raise AvedgeError("no microphone: PortAudio finds no audio input device on this "
                          "machine; connect one, or give --input FILE.wav")
    if device is not None and device not in inputs:
        pa.terminate()
        raise AvedgeError(f"--input-device {device} is not an input device; input devices: "
                          f"{', '.join(map(str, inputs))} (see `avedge listen --list-devices`)")
    return pyaudio, pa


def open_microphone(pyaudio, pa, q, device: int | None):
    """A started input stream feeding `q` with paFloat32 bytes, 20 ms per callback, opened
    as `avedge listen` opens it."""
    from avedge.runtime.errors import AvedgeError

    def callback(in_data, frame_count, time_info, status):
        q.put(in_data)  # bytes of float32: the loop reads and checks them
        return None, pyaudio.paContinue

    try:
        stream = pa.open(format=pyaudio.paFloat32, channels=1, rate=RATE, input=True,
                         input_device_index=device, frames_per_buffer=RATE * CHUNK_MS // 1000,
                         stream_callback=callback)
    except (OSError, ValueError) as exc:
        raise AvedgeError(f"cannot open the microphone at {RATE} Hz mono ({exc}); see "
                          f"`avedge listen --list-devices`") from exc
    stream.start_stream()
    return stream


def check_out(path: str) -> Path:
    """The mp4 path is checked before a minute of work goes into it."""
    from avedge.runtime.errors import InputError
    from avedge.runtime.video_io import WRITE_CODECS

    p = Path(path)
    if p.suffix.lower() not in WRITE_CODECS:
        raise InputError(f"--out {path!r}: accepted extensions are {', '.join(WRITE_CODECS)}")
    if not p.parent.is_dir():
        raise InputError(f"--out {path!r}: folder {str(p.parent)!r} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"--out {path!r}: folder {str(p.parent)!r} is not writable")
    if p.is_dir():
        raise InputError(f"--out {path!r} is a folder; give a file name ending in .mp4")
    return p


def _file_audio(path: str, seconds: float | None):
    """The file decoded as it goes (memory does not grow with its length), at most
    `seconds` long; a missing, unreadable or empty file fails here, before anything slow."""
    import itertools

    import numpy as np

    from avedge.runtime.pipelines.lipsync import stream_audio

    blocks = stream_audio(path, RATE)
    blocks = itertools.chain([next(blocks)], blocks)
    if seconds is None:
        return blocks
    left = int(seconds * RATE)

    def limited():
        nonlocal left
        for b in blocks:
            if left <= 0:
                return
            yield b[:left]
            left -= len(b)

    return limited() if left > 0 else iter([np.zeros(0, np.float32)])


def default_artifacts(args) -> tuple:
    """The shipped lips-pose weights and the face renderer, exported for cpu once and
    cached (as `avedge lipsync` does)."""
    from avedge.cli.common import default_artifact
    from avedge.cli.lipsync_cmd import POSE_FAMILY, renderer_artifact

    pose = args.pose_artifact or default_artifact(POSE_FAMILY, "cpu")
    render = args.render_artifact or renderer_artifact("cpu")
    return pose, render


# ----------------------------------------------------------------------------- run

def run(args) -> int:
    quiet_native_logs()
    from avedge.runtime.errors import InputError
    from avedge.runtime.kiosk_web import KioskServer, is_loopback, parse_serve

    if args.seconds is not None and not args.seconds > 0:
        raise InputError(f"--seconds must be positive, got {args.seconds}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    if args.hop < 1:
        raise InputError(f"--hop must be at least 1 frame, got {args.hop}")
    if args.max_backlog_ms < 40:
        raise InputError(f"--max-backlog-ms must be at least 40 (one frame), got "
                         f"{args.max_backlog_ms}")
    samples = mic = None
    if args.input != "mic":
        samples = _file_audio(args.input, args.seconds)
    out = check_out(args.out) if args.out else None
    if samples is None:
        mic = check_microphone(args.input_device)
    server = None
    if args.serve is not None:
        host, port = parse_serve(args.serve)
        if not is_loopback(host):
            print(f"warning: serving the kiosk page on {host}, not loopback: anyone who can "
                  f"reach this machine on port {port} can watch and hear it", file=sys.stderr)
        server = KioskServer(host, port, args.size)
        try:
            server.start()  # now: a port in use is said before the models load
        except BaseException:
            if mic is not None:
                mic[1].terminate()
            raise
    try:
        report = _run(args, server, out, samples, mic)
    finally:
        if server is not None:
            server.close()
        if mic is not None:
            mic[1].terminate()
    if args.json:
        print_json(report)
        return 0
    lat = report["latency_ms"]
    print(f"{report['frames']} frames, {report['dropped']} dropped "
          f"({report['dropped_per_minute']:.1f}/min); latency median {lat['median']} ms, "
          f"p95 {lat['p95']} ms (audio at a frame's end arrived -> frame ready)")
    if server is not None:
        page = report["page"]
        pl = page["display_latency_ms"]
        print(f"page: latency median {pl['median']} ms, p95 {pl['p95']} ms (-> on screen), "
              f"A/V offset median {page['av_offset_ms']['median']} ms")
    if out is not None:
        print(f"wrote {out}")
    return 0


def _run(args, server, out, samples, mic) -> dict:
    from avedge.runtime.pipelines.kiosk import AudioQueue, FilePacer, KioskLoop, Mp4Sink
    from avedge.runtime.pipelines.lipsync import LipSync
    from avedge.runtime.vision.face_photo import prepare_face

    face = prepare_face(args.face, args.size)
    pose_art, render_art = default_artifacts(args)
    engine = LipSync(pose_art, render_art, face, backend=args.backend, mode="live",
                     hop_frames=args.hop, threads=args.threads)
    quiet_native_logs()  # again: a backend that imported torch reset its loggers
    notes = list(getattr(face, "notes", None) or [])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    q = AudioQueue()
    writer = Mp4Sink(out, args.size) if out is not None else None
    sinks = [s for s in (server, writer) if s is not None]
    loop = KioskLoop(engine, q, sinks=sinks, max_backlog_ms=args.max_backlog_ms)
    if server is not None:
        print(f"kiosk page: {server.url}", file=sys.stderr, flush=True)
    pacer = stream = stop_timer = None
    try:
        if samples is None:
            stream = open_microphone(mic[0], mic[1], q, args.input_device)
            if args.seconds is not None:
                stop_timer = threading.Timer(args.seconds, q.close)
                stop_timer.start()
            print("listening; Ctrl-C to stop", file=sys.stderr, flush=True)
        else:
            if server is not None and not args.no_wait:
                print("waiting for the page to connect (--no-wait: start now)",
                      file=sys.stderr, flush=True)
                while not server.viewer_connected.wait(0.2):
                    pass
            pacer = FilePacer(samples, q, CHUNK_MS)
            pacer.start()
        # Ctrl-C ends the input: the loop flushes, the mp4 is finished, stats are printed
        previous = signal.signal(signal.SIGINT, lambda *_: q.close())
        try:
            stats = loop.run()
        finally:
            signal.signal(signal.SIGINT, previous)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if stop_timer is not None:
            stop_timer.cancel()
        if pacer is not None:
            pacer.stop()
        if stream is not None:
            stream.stop_stream()
            stream.close()
    if writer is not None:
        writer.close()
    report = dict(stats)
    if pacer is not None and pacer.error is not None:  # a file corrupt part-way: stopped
        print(f"warning: the input ended early: {pacer.error}", file=sys.stderr)
        report["input_error"] = str(pacer.error)
    report.update(size=args.size, input_source="microphone" if samples is None else args.input,
                  out=str(out) if out else None, notes=notes,
                  engine=getattr(engine, "stats", None))
    if writer is not None:
        report["out_frames_repeated"] = writer.repeated
    if server is not None:
        server.wait_pages_done(args.linger)
        report["page"] = server.page_summary()
    return report
