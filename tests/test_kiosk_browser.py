"""The kiosk page in a real headless Chromium (Debian's /usr/bin/chromium through
/usr/bin/chromedriver and selenium): `avedge kiosk --serve` runs on a short wav with the
real engine (tiny exported artifacts), the browser opens the page, and the test checks
that the page loads, frames arrive and change while the audio plays (the canvas's pixels
read at two moments, the AudioContext's clock advancing between them), and that the
page reports its latency, to its status line and to the kiosk's stats."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"]
SECONDS = 8.0  # the wav: long enough for two snapshots while it plays on a loaded machine

# the kiosk unit tests' artifact builder (one export, shared through the pytest cache)
_spec = importlib.util.spec_from_file_location(
    "kiosk_unit_tests", Path(__file__).parent / "runtime" / "test_kiosk.py")
unit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unit)

# Canvas pixels, kept in the page: a copy under a name, or the count of pixels differing
# (any channel by more than 8) between two copies; plus the page's own measurements.
SNAP = """
const c = document.getElementById('face');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
window.__snaps = window.__snaps || {};
window.__snaps[arguments[0]] = new Uint8ClampedArray(d);
let sum = 0;
for (let k = 0; k < d.length; k += 4) sum += d[k] + d[k + 1] + d[k + 2];
const K = window.kiosk;
return {mean: sum / (d.length / 4) / 3, w: c.width, h: c.height, drawn: K.framesDrawn,
        index: K.drawnIndex, audio_time: K.audioTime, audio_state: K.audioState,
        clock: K.clock, latency: K.latencyMs, connected: K.connected, error: K.error};
"""
DIFF = """
const a = window.__snaps[arguments[0]], b = window.__snaps[arguments[1]];
let n = 0;
for (let k = 0; k < a.length; k += 4) {
  if (Math.abs(a[k] - b[k]) > 8 || Math.abs(a[k + 1] - b[k + 1]) > 8 ||
      Math.abs(a[k + 2] - b[k + 2]) > 8) n += 1;
}
return n;
"""


def browser(user_dir: str):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: the kiosk page is tested in Debian's "
                    f"chromium; `make test` installs it (apt chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: `make test` installs it (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={user_dir}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def kiosk_inputs(request, tmp_path_factory):
    from avedge.models.corpus.face import default_photo
    from avedge.runtime.audio_io import write_audio
    from PIL import Image

    arts = unit.kiosk_artifacts(unit.artifact_root(request, tmp_path_factory))
    d = tmp_path_factory.mktemp("kiosk")
    Image.fromarray(default_photo()).save(d / "face.png")
    write_audio(d / "talk.wav", unit.speech_like(SECONDS, seed=4), 16000)
    return arts, d / "face.png", d / "talk.wav"


def test_kiosk_page_in_headless_chromium(kiosk_inputs, tmp_path):
    (pose, render), face, wav = kiosk_inputs
    cmd = [sys.executable, "-c", "import sys; from avedge.cli import main; sys.exit(main())",
           "kiosk", "--face", str(face), "--input", str(wav), "--serve", "127.0.0.1:0",
           "--pose-artifact", str(pose), "--render-artifact", str(render),
           "--linger", "6", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    user_dir = tempfile.mkdtemp(prefix="kiosk-chromium-")
    driver = None
    try:
        url = wait_for(lambda: next((m.group(1) for line in err_lines
                                     if (m := re.search(r"kiosk page: (http\S+)", line))),
                                    None) or (proc.poll() is not None and "exited"),
                       30, "the kiosk to serve its page")
        assert url != "exited", "".join(err_lines)
        driver = browser(user_dir)
        driver.set_script_timeout(20)
        driver.get(url)
        assert driver.title == "avedge kiosk"
        # frames arrive and are drawn, with the audio clock running
        wait_for(lambda: driver.execute_script(SNAP, "a")["drawn"] >= 10, 30,
                 "10 frames drawn")
        a = driver.execute_script(SNAP, "a")
        time.sleep(1.5)
        b = driver.execute_script(SNAP, "b")
        assert a["connected"] and b["connected"] and not b["error"]
        assert (a["w"], a["h"]) == (256, 256) and 20 < a["mean"] < 235  # a face, not blank
        assert a["clock"] == b["clock"] == "audio" and b["audio_state"] == "running"
        assert b["audio_time"] - a["audio_time"] > 0.5  # the audio clock advances: playing
        assert b["index"] - a["index"] >= 10  # ~37 frames were due in 1.5 s
        changed = driver.execute_script(DIFF, "a", "b")
        print("pixels changed", changed, "frames", a["index"], b["index"])
        assert changed > 200, f"only {changed} pixels changed between frames {a['index']} " \
                             f"and {b['index']}"
        # the page reports latency: status line and window.kiosk
        assert 0 < b["latency"] < 5000
        status = driver.find_element("id", "status").text
        assert re.search(r"connected · \d+ fps · latency \d+ ms \(p95 \d+\)", status), status
        # the end of the input reaches the page, which reports back before the kiosk exits
        wait_for(lambda: driver.execute_script("return window.kiosk.done"), SECONDS + 15,
                 "the page to play to the end")
        out, _ = proc.communicate(timeout=30)
    finally:
        if driver is not None:
            driver.quit()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(user_dir, ignore_errors=True)
    assert proc.returncode == 0, "".join(err_lines)
    report = json.loads(out)
    page = report["page"]
    print(json.dumps({k: report[k] for k in ("frames", "dropped", "latency_ms")}),
          json.dumps({k: page[k] for k in ("display_latency_ms", "av_offset_ms")}),
          json.dumps(page["reports"]["1"]))
    assert page["viewers_reported"] == 1 and page["reports"]["1"]["done"] is True
    shown = page["display_latency_ms"]
    assert shown["n"] >= 0.8 * report["frames"]  # every drawn frame's latency came back
    # on screen after the frame was ready: the page's latency includes the loop's
    assert shown["median"] > report["latency_ms"]["median"]
    assert page["av_offset_ms"]["median"] < 60  # shown at its sound's time (+ a display tick)
    assert np.isfinite(report["latency_ms"]["p95"])
