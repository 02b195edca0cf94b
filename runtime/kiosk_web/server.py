"""The kiosk display's HTTP server: a stdlib ThreadingHTTPServer on loopback by default.

Routes (nothing else is served; no file system paths are looked up):
  GET  /           the page (index.html, package data beside this file)
  GET  /kiosk.js   its script
  GET  /stream     one long binary response: the kiosk's messages as they happen
  POST /report     the page's measurements (JSON, at most 256 KB), twice a second
  GET  /stats      JSON: the loop's latest stats and the page's reports, aggregated

Stream messages: 12-byte header (type: 1 ASCII byte + 3 zero bytes, meta length uint32 LE,
payload length uint32 LE), then `meta` (UTF-8 JSON), then the payload:
  h  hello   {viewer, rate, fps, size}  first message to each viewer
  a  audio   {s: first stream sample, arr: arrival epoch ms}  payload int16 PCM mono
  f  frame   {i, t, arr: epoch ms the audio at the frame's end arrived, ready: epoch ms}
             payload JPEG
  d  dropped {i: [stream frame indices the loop skipped]}
  e  end     {frames}  the input ended; the stream closes after it
Each viewer has its own bounded queue: a viewer that cannot keep up loses messages (counted
in `viewer_drops`), it never slows the loop or the other viewers.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import numpy as np
from avedge.runtime.errors import AvedgeError, InputError
from avedge.runtime.pipelines.kiosk import LatencyStats, Sink

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
VIEWER_QUEUE = 400  # messages (~8 s of audio + frames) before a slow viewer loses some
MAX_REPORT = 256 * 1024
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8")}


def parse_serve(value: str | None) -> tuple[str, int]:
    """'HOST:PORT', 'PORT', ':PORT' or None -> (host, port); no host means loopback (an empty
    host would make Python bind every interface). InputError naming what is accepted."""
    if value is None or value == "":
        return DEFAULT_HOST, DEFAULT_PORT
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--serve {value!r}: give HOST:PORT with a port 0-65535 (0: any free "
                         f"port), e.g. {DEFAULT_HOST}:{DEFAULT_PORT}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def pack(kind: str, meta: dict, payload: bytes = b"") -> bytes:
    m = json.dumps(meta, separators=(",", ":")).encode()
    return kind.encode("ascii") + b"\0\0\0" + struct.pack("<II", len(m), len(payload)) + m \
        + payload


def unpack_all(data: bytes) -> list[tuple[str, dict, bytes]]:
    """Split a captured stream into messages (tests and tools read the protocol with it)."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        ml, pl = struct.unpack_from("<II", data, pos + 4)
        if pos + 12 + ml + pl > len(data):
            break
        meta = json.loads(data[pos + 12: pos + 12 + ml])
        out.append((chr(data[pos]), meta, data[pos + 12 + ml: pos + 12 + ml + pl]))
        pos += 12 + ml + pl
    return out


class _Viewer:
    def __init__(self, vid: int):
        self.id = vid
        self.q: queue.Queue = queue.Queue(VIEWER_QUEUE)
        self.drops = 0

    def send(self, msg: bytes | None) -> None:
        try:
            self.q.put_nowait(msg)
        except queue.Full:
            self.drops += 1
            if msg is None:  # the end marker must get through: make room for it
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    pass
                self.q.put_nowait(None)


class KioskServer(Sink):
    """The loop's display sink: encodes frames to JPEG on its own thread and streams them,
    with the audio, to every connected page; collects what the pages measure."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, size: int = 256,
                 jpeg_quality: int = 85, fps: int = 25, rate: int = 16000):
        self.host, self.port, self.size = host, port, size
        self.quality, self.fps, self.rate = int(jpeg_quality), fps, rate
        self._viewers: dict[int, _Viewer] = {}
        self._gone_drops = 0  # messages lost by viewers that have left
        self._lock = threading.Lock()
        self._next_id = 1
        self.viewer_connected = threading.Event()
        self._enc_q: queue.Queue = queue.Queue(8)
        self.encode_drops = 0
        self.encode_ms = 0.0
        self.encoded = 0
        self.reports: dict[int, dict] = {}
        self.page_latency = LatencyStats()
        self.page_av = LatencyStats()
        self.loop_stats: dict = {}
        self._httpd = None
        self._threads: list[threading.Thread] = []
        self._ended = False

    # ---- lifecycle
    def start(self) -> str:
        """Bind and serve in background threads; returns the page's URL."""
        here = resources.files(__package__)
        missing = [n for n, _ in set(STATIC.values()) if not here.joinpath(n).is_file()]
        if missing:  # a wheel built without the package data
            raise AvedgeError(f"the kiosk page's files ({', '.join(sorted(missing))}) are "
                              f"missing from this avedge install; reinstall avedge")
        handler = type("KioskHandler", (_Handler,), {"kiosk": self})
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise InputError(f"cannot serve on {self.host}:{self.port} ({exc.strerror or exc}); "
                             f"choose another --serve HOST:PORT (port 0: any free one)") \
                from None
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        for target, name in ((self._httpd.serve_forever, "kiosk-http"),
                             (self._encode_loop, "kiosk-jpeg")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self._enc_q.put(None)
        with self._lock:
            viewers = list(self._viewers.values())
        for v in viewers:
            v.send(None)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def wait_pages_done(self, timeout: float) -> bool:
        """After the input ended: wait (up to `timeout` s) until every page that watched has
        played to the end and sent its final report. True if they all did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ids = set(self.reports) | set(self._viewers)
                if ids and all(self.reports.get(i, {}).get("done") for i in ids):
                    return True
                if not ids:
                    return False
            time.sleep(0.05)
        return False

    # ---- viewers
    def _add_viewer(self) -> _Viewer:
        with self._lock:
            v = _Viewer(self._next_id)
            self._next_id += 1
            self._viewers[v.id] = v
        v.send(pack("h", {"viewer": v.id, "rate": self.rate, "fps": self.fps,
                          "size": self.size}))
        if self._ended:
            v.send(pack("e", {"frames": self.loop_stats.get("frames")}))
            v.send(None)
        self.viewer_connected.set()
        return v

    def _remove_viewer(self, v: _Viewer) -> None:
        with self._lock:
            self._viewers.pop(v.id, None)
            self._gone_drops += v.drops

    def _broadcast(self, msg: bytes | None) -> None:
        with self._lock:
            viewers = list(self._viewers.values())
        for v in viewers:
            v.send(msg)

    # ---- the loop's sink interface
    def on_audio(self, start: int, pcm: np.ndarray, arrived: float) -> None:
        if not self._viewers:
            return
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self._broadcast(pack("a", {"s": int(start), "arr": arrived * 1000}, pcm16))

    def on_frame(self, frame) -> None:
        if not self._viewers:
            return
        try:
            self._enc_q.put_nowait(frame)
        except queue.Full:  # the encoder is behind: the newest frame matters most
            self.encode_drops += 1
            try:
                self._enc_q.get_nowait()
            except queue.Empty:
                pass
            self._enc_q.put_nowait(frame)

    def on_dropped(self, indices) -> None:
        self._broadcast(pack("d", {"i": [int(i) for i in indices]}))

    def on_end(self, stats: dict) -> None:
        self.loop_stats = stats
        self._enc_q.put(("end", stats))

    def _encode_loop(self) -> None:
        import cv2  # the kiosk's face finder needs OpenCV already (avedge[lipread])

        while True:
            item = self._enc_q.get()
            if item is None:
                return
            if isinstance(item, tuple):  # end: after every frame queued before it
                self._ended = True
                self._broadcast(pack("e", {"frames": item[1].get("frames")}))
                self._broadcast(None)
                continue
            t = time.perf_counter()
            ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(item.rgb[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            self.encode_ms += (time.perf_counter() - t) * 1000
            self.encoded += 1
            if ok:
                self._broadcast(pack("f", {"i": item.index, "t": item.time_s,
                                           "arr": item.arrived * 1000,
                                           "ready": item.ready * 1000}, jpg.tobytes()))

    # ---- the pages' measurements
    def add_report(self, report: dict) -> None:
        vid = int(report.get("viewer") or 0)
        for entry in report.get("shown") or []:
            if isinstance(entry, (list, tuple)) and len(entry) >= 3:
                lat, av = entry[1], entry[2]
                if isinstance(lat, (int, float)):
                    self.page_latency.add(float(lat))
                if isinstance(av, (int, float)):
                    self.page_av.add(abs(float(av)))
        keep = {k: v for k, v in report.items() if k != "shown"}
        with self._lock:
            prev = self.reports.get(vid, {})
            keep["reports"] = prev.get("reports", 0) + 1
            self.reports[vid] = keep

    def page_summary(self) -> dict:
        """What the pages measured: latency from the audio's arrival at the kiosk to the
        frame on screen, and how far each shown frame was from its sound (A/V offset)."""
        with self._lock:
            reports = {str(k): dict(v) for k, v in self.reports.items()}
            viewers = len(self._viewers)
            drops = self._gone_drops + sum(v.drops for v in self._viewers.values())
        return {"url": self.url, "report_endpoint": self.url + "report",
                "viewers_connected": viewers, "viewers_reported": len(reports),
                "display_latency_ms": self.page_latency.summary(),
                "av_offset_ms": self.page_av.summary(),
                "viewer_drops": drops,
                "jpeg_ms_per_frame": round(self.encode_ms / self.encoded, 3)
                if self.encoded else None,
                "encode_drops": self.encode_drops, "reports": reports}


class _Handler(BaseHTTPRequestHandler):
    kiosk: KioskServer  # set on the subclass made per server
    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes
    server_version = "avedge-kiosk"

    def log_message(self, format, *args):  # the stdlib names it `format`
        pass  # requests are not news; errors surface as stats

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, ctype = STATIC[path]
            body = resources.files(__package__).joinpath(name).read_bytes()
            return self._send(200, body, ctype)
        if path == "/stats":
            body = json.dumps({"loop": self.kiosk.loop_stats,
                               "page": self.kiosk.page_summary()}).encode()
            return self._send(200, body, "application/json")
        if path == "/stream":
            return self._stream()
        return self._send(404, b"not found\n", "text/plain")

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/report":
            return self._send(404, b"not found\n", "text/plain")
        n = int(self.headers.get("Content-Length") or 0)
        if not 0 < n <= MAX_REPORT:
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"bad length\n",
                              "text/plain")
        try:
            report = json.loads(self.rfile.read(n))
        except ValueError:
            return self._send(400, b"not JSON\n", "text/plain")
        if not isinstance(report, dict):
            return self._send(400, b"not a JSON object\n", "text/plain")
        self.kiosk.add_report(report)
        return self._send(204, b"", "text/plain")

    def _stream(self):
        v = self.kiosk._add_viewer()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            while True:
                msg = v.q.get()
                if msg is None:
                    break
                self.wfile.write(msg)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away
        finally:
            self.kiosk._remove_viewer(v)
