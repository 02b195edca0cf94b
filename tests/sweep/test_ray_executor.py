"""RayExecutor against a real Ray head this module starts on 127.0.0.1 and stops.

One head for the module (starting one takes seconds on 2 cores). It is `ray start --head
--block` in its own session, stopped by its pid (SIGTERM drains and stops the processes it
started; anything left in its process group is killed), not by `ray stop`, which would
stop every Ray cluster on the machine. Skipped only where ray is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (pip install 'avedge[sweep]')")

# Ray rewrites a loopback address to the machine's own unless this is set, for `ray start`
# and for the driver (read when ray is imported, so before the executor imports it).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", ("import sys; from ray.scripts.scripts import main; "
                                   "sys.argv[0] = 'ray'; main()")]


@pytest.fixture(scope="module")
def ray_head():
    """-> "127.0.0.1:PORT" of a 2-CPU head that lives for this module's tests."""
    mp = pytest.MonkeyPatch()
    for k, v in LOOPBACK_ENV.items():
        mp.setenv(k, v)
    if "ray" in sys.modules:  # imported by an earlier test module: too late for the env var
        from ray._private import ray_constants

        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="avray", dir="/tmp")  # short: Ray's socket paths
    with open(Path(temp) / "ray-start.log", "wb") as log:  # the child keeps its own fd
        proc = subprocess.Popen(
            [*_ray_cli(), "start", "--head", "--block", f"--port={port}",
             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
             f"--temp-dir={temp}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **LOOPBACK_ENV}, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (Path(temp) / "ray-start.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (Path(temp) / "ray-start.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"ray start --head did not come up:\n{tail}")
            time.sleep(0.2)
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        proc.send_signal(signal.SIGTERM)  # --block: drains, stops what it started
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: whatever is left of it
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)
        mp.undo()


@pytest.fixture(scope="module")
def executor(ray_head):
    from avedge.sweep.ray_executor import RayExecutor

    ex = RayExecutor(ray_head)
    yield ex
    ex.close()


# -- functions the workers import by reference (this folder is on the driver's path,
# which the executor gives its workers, as a user's module:factory would be) -----------

def echo_pid(spec: dict) -> dict:
    """A trial stand-in: says which process ran it, or fails the way a trial can."""
    print(f"trial {spec['i']} on pid {os.getpid()}")
    if spec.get("fail") == "raise":
        raise ValueError(f"bad spec {spec['i']}")
    if spec.get("fail") == "die":
        os._exit(3)  # a native crash: the worker is gone without a result
    return {"i": spec["i"], "pid": os.getpid(), "status": "ok"}


def stream_rms(session) -> dict:
    """A --metric for tiny-stream: RMS of its streamed output on a fixed signal, which any
    change in the artifact's weights or arithmetic changes."""
    rng = np.random.default_rng(0)
    signal_ = (rng.standard_normal(4000) * 0.1).astype(np.float32)
    stream = session.stream()
    pieces = []
    for i in range(0, signal_.size, 400):
        stream.accept(signal_[i:i + 400])
        pieces.append(stream.read())
    pieces.append(stream.finish())
    out = np.concatenate(pieces, -1)
    return {"name": "stream_rms", "value": float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))}


@pytest.mark.slow
def test_each_trial_runs_in_its_own_worker_process(ray_head, tmp_path):
    from avedge.sweep.ray_executor import RayExecutor

    ex = RayExecutor(ray_head, fn=echo_pid, num_cpus=1)  # two at a time on the 2-CPU head
    specs = [{"i": i, "out_dir": str(tmp_path / f"t{i}")} for i in range(4)]
    specs += [{"i": 4, "fail": "raise", "trial_id": "raises", "out_dir": str(tmp_path / "t4")},
              {"i": 5, "fail": "die", "trial_id": "dies", "out_dir": str(tmp_path / "t5")}]
    got = {spec["i"]: result for spec, result in ex.map(specs)}
    assert sorted(got) == list(range(6))
    ok = [got[i] for i in range(4)]
    assert all(r["status"] == "ok" for r in ok)
    pids = {r["pid"] for r in ok}
    assert len(pids) == 4 and os.getpid() not in pids  # max_calls=1: a fresh process each
    for i in range(4):  # the worker wrote its spec and its output beside it
        assert json.loads((tmp_path / f"t{i}" / "spec.json").read_text())["i"] == i
        assert f"trial {i} on pid {got[i]['pid']}" in (tmp_path / f"t{i}" / "trial.log").read_text()
        assert got[i]["process_s"] >= 0
    # A trial that raises or kills its worker is a failed result; the others still came.
    assert got[4]["status"] == "failed" and "ValueError: bad spec 4" in got[4]["error"]
    assert got[5]["status"] == "failed" and got[5]["trial_id"] == "dies"
    assert "\n" not in got[5]["error"]


@pytest.mark.slow
def test_ray_sweep_equals_local_sweep(executor, tmp_path):
    """The same tiny-stream trials through local processes and through Ray: the same
    artifacts, the same metric to the last bit, the same sizes; latency only loosely."""
    from avedge.sweep.executors import LocalExecutor
    from avedge.sweep.plan import Sweep, trial_specs, validate

    sweep = validate(Sweep("tiny-stream", ["fp32", "int8"], ["cpu"], ["onnxruntime"],
                           metric=f"{__name__}:stream_rms", runs=30, warmup=3))
    results = {}
    for name, ex in (("local", LocalExecutor(1)), ("ray", executor)):
        specs = trial_specs(sweep, tmp_path / name / "trials")
        results[name] = {s["trial_id"]: r for s, r in ex.map(specs)}
        for spec in specs:  # the worker wrote the result where the sweep folder lives
            written = json.loads((Path(spec["out_dir"]) / "result.json").read_text())
            assert written["status"] == "ok", written
    local, ray_ = results["local"], results["ray"]
    assert sorted(local) == sorted(ray_) == ["fp32__cpu__onnxruntime", "int8__cpu__onnxruntime"]
    assert len({r["pid"] for r in ray_.values()}) == 2
    for tid in local:
        a, b = local[tid], ray_[tid]
        assert a["status"] == b["status"] == "ok", (a, b)
        assert a["metric"] == b["metric"] and a["metric"]["value"] > 0
        assert (a["size_bytes"], a["artifact_bytes"]) == (b["size_bytes"], b["artifact_bytes"])
        assert _model_hashes(a["artifact"]) == _model_hashes(b["artifact"])
        ratio = a["latency_median_ms"] / b["latency_median_ms"]
        assert 0.1 < ratio < 10, (tid, a["latency_median_ms"], b["latency_median_ms"])
    # int8 really is another artifact (so equal metrics above are not vacuous)
    assert local["int8__cpu__onnxruntime"]["metric"] != local["fp32__cpu__onnxruntime"]["metric"]


def test_cpus_per_trial_default_to_a_whole_node(executor, ray_head):
    """One trial per node at a time by default (undisturbed timings); a request no node
    can hold is refused rather than queued forever."""
    from avedge.runtime.errors import AvedgeError

    from avedge.sweep.ray_executor import RayExecutor

    assert executor.num_cpus == 2
    with pytest.raises(AvedgeError, match="num_cpus=3 per trial, but the largest node"):
        RayExecutor(ray_head, num_cpus=3)


def _model_hashes(artifact: str) -> dict:
    files = json.loads((Path(artifact) / "manifest.json").read_text())["files"]
    return {name: rec["sha256"] for name, rec in files.items()}


def test_dead_address_fails_fast_with_one_line(tmp_path, capsys):
    from avedge.runtime.errors import AvedgeError

    from avedge.cli import main
    from avedge.sweep.ray_executor import RayExecutor

    dead = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(AvedgeError, match=f"no Ray cluster answers at {dead}"):
        RayExecutor(dead)
    assert time.monotonic() - t0 < 10
    # Through the CLI: one line, and the sweep folder is never created.
    out = tmp_path / "sweep"
    rc = main(["sweep", "tiny-stream", "--recipes", "fp32", "--targets", "cpu",
               "--out", str(out), "--ray", dead])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and not out.exists()
    assert dead in err and len(err.splitlines()) == 1, err


def test_a_listener_that_is_not_ray_fails_in_bounded_time(monkeypatch):
    """Something answers TCP but never speaks Ray's protocol: Ray itself would wait for
    minutes; the executor gives up after CONNECT_TIMEOUT_S."""
    from avedge.runtime.errors import AvedgeError

    from avedge.sweep import ray_executor

    monkeypatch.setattr(ray_executor, "CONNECT_TIMEOUT_S", 2.0)
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():  # accept and say nothing
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(AvedgeError, match="is not a Ray head"):
            ray_executor.RayExecutor(address)
        assert time.monotonic() - t0 < 8
    finally:
        stop.set()
        t.join()
        for conn in held:
            conn.close()
        server.close()


def test_bad_address_and_missing_ray_are_one_line(monkeypatch):
    from avedge.runtime.errors import AvedgeError

    from avedge.sweep import executors
    from avedge.sweep.ray_executor import RayExecutor

    for bad in ("nonsense", "127.0.0.1:", "127.0.0.1:99999"):
        with pytest.raises(AvedgeError, match="is not HOST:PORT"):
            RayExecutor(bad)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ModuleNotFoundError
    with pytest.raises(AvedgeError, match=r"pip install 'avedge\[sweep\]'"):
        RayExecutor("127.0.0.1:6379")
    with pytest.raises(AvedgeError, match=r"pip install 'avedge\[sweep\]'"):
        executors.make_executor("127.0.0.1:6379", 1)
