"""avedge listen --enroll E.wav [--input-device N] [--output-device N] [--artifact DIR]

Microphone -> extractor -> speaker in real time through pyaudio (PortAudio), 16 kHz
mono, one 8 ms chunk per callback. The callback is the same DuplexProcessor (and so
the same runtime Stream) that `avedge extract` drives from a file; `--from-file WAV`
drives it from a file at the sound card's pace instead of a microphone (no hardware
needed), `--seconds` stops after that long. At the end it prints how many blocks
missed their deadline (compute longer than the block, or an output underrun).
"""

from __future__ import annotations

import sys
import time

from avedge.cli.common import print_json, quiet_native_logs
from avedge.runtime.pipelines.extraction import DEFAULT_AMBIENT_DB, check_ambient_db

RATE = 16000


def register(sub):
    p = sub.add_parser("listen", help="real-time: microphone -> enrolled talker only -> speaker")
    p.add_argument("--enroll", help="1-5 s of the target talker (required to listen)")
    p.add_argument("--input-device", type=int, help="PortAudio input device index")
    p.add_argument("--output-device", type=int, help="PortAudio output device index")
    p.add_argument("--artifact", help="speech-extractor artifact (default: shipped, cpu)")
    p.add_argument("--block", type=int, default=128, help="samples per callback (default 128)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--from-file", help="feed this file instead of the microphone, in real time")
    p.add_argument("--save", help="also write what was played to this file")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--ambient-db", default=str(DEFAULT_AMBIENT_DB), metavar="DB",
                   help="mix the untouched input back at this level under the extracted "
                        "voice (some of the room, and a floor when the target is turned "
                        "down); 'off' for the extracted voice alone (default %(default)s)")

    p.set_defaults(func=run)


def _pyaudio():
    from avedge.runtime.errors import BackendUnavailableError

    try:
        import pyaudio
    except ImportError as exc:
        raise BackendUnavailableError("avedge listen needs pyaudio: pip install 'avedge[audio]' "
                                      "(and apt install portaudio19-dev to build it)") from exc
    return pyaudio


def list_devices(pa) -> list[dict]:
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        out.append({"index": i, "name": d["name"], "inputs": d["maxInputChannels"],
                    "outputs": d["maxOutputChannels"]})
    return out


def run(args) -> int:
    quiet_native_logs()
    ambient_db = check_ambient_db(args.ambient_db)  # before any device is opened
    import numpy as np

    from avedge.cli.extract_cmd import default_artifact, warn_clipping
    from avedge.runtime.audio_io import read_audio, write_audio
    from avedge.runtime.errors import AvedgeError
    from avedge.runtime.pipelines.extraction import DuplexProcessor, Extraction

    pyaudio = _pyaudio()
    if args.list_devices:
        pa = pyaudio.PyAudio()
        try:
            devices = list_devices(pa)
        finally:
            pa.terminate()
        if args.json:
            print_json(devices)
        for d in [] if args.json else devices:
            print(f"{d['index']:3d}  in {d['inputs']}  out {d['outputs']}  {d['name']}")
        return 0
    if not args.enroll:
        raise AvedgeError("--enroll E.wav is required (1-5 s of the target talker)")
    if args.block < 1:
        raise AvedgeError(f"--block must be positive, got {args.block}")
    enroll = read_audio(args.enroll, what="enrollment")
    warn_clipping(enroll, "the enrollment")
    ex = Extraction.from_artifact(args.artifact or default_artifact("cpu"),
                                  ambient_db=ambient_db)
    quiet_native_logs()  # again: a backend that imported torch reset its loggers
    proc = DuplexProcessor(ex, ex.enroll(enroll.samples), args.block)
    source = read_audio(args.from_file, what="--from-file input").samples \
        if args.from_file else None
    played = []
    pos = {"i": 0}

    def callback(in_data, frame_count, time_info, status):
        if source is not None:  # file in place of the microphone, same callback code
            s = pos["i"]
            x = source[s: s + frame_count]
            x = np.pad(x, (0, frame_count - len(x)))
            pos["i"] = s + frame_count
            in_data = x.astype(np.float32).tobytes()
        out, flag = proc.pyaudio_callback(in_data, frame_count, time_info, status)
        if args.save:
            played.append(np.frombuffer(out, np.float32).copy())
        done = source is not None and pos["i"] >= len(source)
        return out, (pyaudio.paComplete if done else flag)

    pa = pyaudio.PyAudio()
    try:
        try:
            stream = pa.open(format=pyaudio.paFloat32, channels=1, rate=RATE,
                             input=source is None, output=True,
                             input_device_index=args.input_device,
                             output_device_index=args.output_device,
                             frames_per_buffer=args.block, stream_callback=callback)
        except (OSError, ValueError) as exc:
            raise AvedgeError(f"cannot open the audio device(s) at {RATE} Hz mono ({exc}); see "
                              f"`avedge listen --list-devices`") from exc
        latency_ms = (args.block + proc.latency_samples) / RATE * 1000
        print(f"listening: {args.block}-sample blocks, algorithmic latency "
              f"{ex.algorithmic_latency_ms:.0f} ms, output lag {latency_ms:.1f} ms + device; "
              "Ctrl-C to stop", file=sys.stderr)
        stream.start_stream()
        t0 = time.time()
        try:
            while stream.is_active():
                if args.seconds is not None and time.time() - t0 >= args.seconds:
                    break
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        stream.stop_stream()
        stream.close()
    finally:
        pa.terminate()
    if args.save and played:
        write_audio(args.save, np.concatenate(played), RATE)
    report = proc.stats()
    if args.json:
        print_json(report)
    else:
        print(f"{report['blocks']} blocks, {report['deadline_misses']} deadline misses, "
              f"{report['underruns']} underruns; compute median {report['compute_ms_median']:.3f}"
              f" ms, p90 {report['compute_ms_p90']:.3f} ms per block")
    return 0
