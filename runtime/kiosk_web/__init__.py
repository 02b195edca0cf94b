"""The kiosk display: a local web page showing the talking face with its audio.

server.py is a stdlib HTTP server (loopback by default) streaming JPEG frames and PCM audio
to index.html + kiosk.js (package data beside it; no external script, no network), which
plays the audio through WebAudio, shows each frame at its sound's time and posts what it
measured (latency, A/V offset, fps) back to the server.
"""

from avedge.runtime.kiosk_web.server import KioskServer, is_loopback, parse_serve

__all__ = ["KioskServer", "is_loopback", "parse_serve"]
