"""Run a sweep's trials on an existing Ray cluster: `avedge sweep ... --ray HOST:PORT`.

    RayExecutor(address, fn=None, *, num_cpus=None).map(specs) -> Iterator[(spec, result)]

Each trial is one Ray task with `max_calls=1` (a fresh worker process per trial, so its
peak RSS is its own, as with the local executor) and `max_retries=0` (a trial that kills
its worker is recorded as failed, not run again behind the sweep's back). By default a
trial reserves all the CPUs of the cluster's smallest node, so trials do not disturb each
other's timings (the local executor's one worker): N nodes run N trials at a time.
A trial's peak RSS includes Ray's worker runtime (some tens of MB more than a local one).

Shared filesystem: the worker writes the trial's artifact, result.json, spec.json and
trial.log under spec["out_dir"] itself, so that folder must be the same path on every
node: a cluster on one machine, or the sweep folder on NFS mounted at the same place.
The driver also receives the result dict (and records it if the worker could not).
Workers must run the same Python environment with avedge installed (start `ray` from it).

The driver must run on a node of the cluster (the head, or a machine that joined it
with `ray start --address=...`). A head on this machine only, all traffic on loopback:

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 ray start --head \\
        --port=6379 --node-ip-address=127.0.0.1 --include-dashboard=false

(without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray rewrites 127.0.0.1 to the machine's own
address; this module sets it for the driver when the address is a loopback one).

The constructor connects, so a dead address fails (one AvedgeError line, in about
CONNECT_TIMEOUT_S at most) before the sweep creates its folder.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from avedge.runtime.errors import AvedgeError

CONNECT_TIMEOUT_S = 15.0  # each of: the TCP connect, the GCS answering (Ray's own: minutes)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


class RayExecutor:
    """Trials as Ray tasks on the cluster at `address` ("host:port" of its head's GCS).

    `fn`: the function each task runs on a spec (default `avedge.sweep.trial.run_trial`);
    it must be importable on the workers. `num_cpus`: CPUs reserved per trial (Ray also
    sets the trial's OMP_NUM_THREADS to it); None: the smallest node's, one trial per node
    at a time for undisturbed latencies; fewer packs trials side by side."""

    def __init__(self, address: str, fn: Callable[[dict], dict] | None = None, *,
                 num_cpus: float | None = None):
        if num_cpus is not None and not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
            raise AvedgeError(f"num_cpus per trial must be a number > 0, got {num_cpus!r}")
        host, port = _parse(address)
        self.address, self.fn = f"{host}:{port}", fn
        loopback = _is_loopback(host)
        if loopback and "ray" not in sys.modules:
            # Ray reads these when imported: keep a loopback cluster on loopback, no stats.
            for key, value in LOOPBACK_ENV.items():
                os.environ.setdefault(key, value)
        ray = _import_ray()
        self._ray = ray
        _probe_tcp(host, port, self.address)
        nodes = _probe_gcs(self.address)
        _check_driver_is_a_node(ray, self.address, host, loopback, nodes)
        self.num_cpus = _cpus_per_trial(nodes, num_cpus, self.address)
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            try:
                ray.init(address=self.address, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - Ray raises many kinds
                raise AvedgeError(f"cannot connect to the Ray cluster at {self.address}: "
                                  f"{_first_line(exc)}") from None
        else:
            current = ray.get_runtime_context().gcs_address
            if current.split(":")[-1] != str(port):
                raise AvedgeError(f"this process is already connected to the Ray cluster at "
                                  f"{current}; cannot also use {self.address}")
        # The driver's import path (minus the interpreter's own), as the local executor
        # gives its children: a user's `module:factory` or --metric imports on a worker.
        from avedge.sweep.executors import _child_env

        env = {"PYTHONPATH": _child_env()["PYTHONPATH"]}
        self._task = ray.remote(max_calls=1, max_retries=0, num_cpus=self.num_cpus,
                                runtime_env={"env_vars": env})(_run_in_worker)

    def map(self, specs: list[dict]) -> Iterator[tuple[dict, dict]]:
        """Submit every trial, yield (spec, result) as each finishes. Closing the iterator
        early (the sweep is interrupted) cancels the trials still queued or running."""
        ray = self._ray
        pending = {}
        for spec in specs:
            job = dict(spec)
            if "out_dir" in job:  # a worker's cwd is not ours
                job["out_dir"] = str(Path(job["out_dir"]).resolve())
            pending[self._task.remote(self.fn, job)] = spec
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    spec = pending.pop(ref)
                    yield spec, self._collect(ref, spec)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _collect(self, ref, spec: dict) -> dict:
        try:
            return self._ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the worker died or fn raised: recorded
            cause = getattr(exc, "cause", None)  # RayTaskError: the exception fn raised
            why = (f"{type(cause).__name__}: {_first_line(cause)}" if cause is not None
                   else f"{type(exc).__name__}: {_first_line(exc)}")
            result = {k: spec.get(k) for k in ("trial_id", "model", "recipe", "target",
                                               "backend")}
            result.update(status="failed", error=f"Ray task failed without a result ({why})")
            return result

    def close(self) -> None:
        """Disconnect, if this executor made the connection."""
        if self._owns_connection and self._ray.is_initialized():
            self._ray.shutdown()


def _run_in_worker(fn, spec: dict) -> dict:
    """On the worker (a fresh process, max_calls=1): output to out_dir/trial.log and
    spec.json beside it, as the local executor does; then fn(spec), timed."""
    t0 = time.perf_counter()
    if "out_dir" in spec:
        from avedge.runtime.fsutil import atomic_write_json

        out = Path(spec["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "spec.json", spec)
        sys.stdout.flush()
        sys.stderr.flush()
        log = os.open(out / "trial.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)  # this process runs one task, then exits: its fds are ours
        os.dup2(log, 2)
        os.close(log)
    if fn is None:
        from avedge.sweep.trial import run_trial as fn
    result = dict(fn(spec))
    # The local executor's process_s: time on the worker including imports (run.py
    # subtracts wall_s to report trial start-up).
    result["process_s"] = round(time.perf_counter() - t0, 3)
    return result


def _parse(address: str) -> tuple[str, int]:
    host, sep, port = str(address).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AvedgeError(f"--ray {address!r} is not HOST:PORT (the address of a Ray head's "
                          f"GCS, e.g. 127.0.0.1:6379)")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name == "ray":
            raise AvedgeError("--ray needs the ray package, which is not installed here; "
                              "pip install 'avedge[sweep]'") from None
        raise
    return ray


def _probe_tcp(host: str, port: int, address: str) -> None:
    """Nothing listening, or a host that does not answer: fail now (Ray retries for
    minutes before it gives up)."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise AvedgeError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
                          f"start one with `ray start --head --port={port}` or give the "
                          f"address its head printed") from None


def _probe_gcs(address: str) -> dict:
    """Ask the head's GCS for its nodes, in CONNECT_TIMEOUT_S at most: something that
    listens but is not a Ray head would otherwise hang ray.init. -> {node_id: info}."""
    from ray._raylet import GcsClient  # what `ray status` uses to reach a head

    got: dict = {}

    def ask():
        try:
            got["nodes"] = GcsClient(address=address).get_all_node_info(
                timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - reported below as one line
            got["error"] = exc

    t = threading.Thread(target=ask, daemon=True)  # left to finish alone if it hangs
    t.start()
    t.join(CONNECT_TIMEOUT_S)
    if "nodes" not in got:
        why = _first_line(got["error"]) if "error" in got else \
            f"no answer in {CONNECT_TIMEOUT_S:.0f} s"
        raise AvedgeError(f"{address} answers but is not a Ray head's GCS ({why}); give the "
                          f"address `ray start --head` printed")
    return got["nodes"]


def _check_driver_is_a_node(ray, address: str, host: str, loopback: bool, nodes: dict) -> None:
    """ray.init attaches the driver to a node on this machine; when there is none it
    waits and fails late with a long message. Say what to do instead."""
    alive = sorted({n.node_manager_address for n in nodes.values() if n.state == 0})
    if not alive:
        raise AvedgeError(f"the Ray cluster at {address} has no live node")
    from ray._private import ray_constants

    if loopback and ray_constants.ENABLE_RAY_CLUSTER:
        raise AvedgeError(f"ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was "
                          f"set, so it would rewrite {host} to this machine's address; set "
                          f"it before importing ray (or give the head's non-loopback address)")
    me = "127.0.0.1" if loopback else ray.util.get_node_ip_address()
    if me not in alive:
        hint = (f"; the head registered its nodes at {', '.join(alive)}: give that address "
                f"instead of {host}" if loopback else
                "; run the sweep on a node of the cluster (`ray start --address=" + address
                + "` joins this machine)")
        raise AvedgeError(f"this machine ({me}) is not a node of the Ray cluster at {address} "
                          f"(nodes: {', '.join(alive)}){hint}")


def _cpus_per_trial(nodes: dict, wanted: float | None, address: str) -> float:
    """`wanted`, or the smallest live node's CPUs; refused if no node has that many (Ray
    would queue the trials forever)."""
    cpus = [n.resources_total.get("CPU", 0.0) for n in nodes.values() if n.state == 0]
    if not cpus or max(cpus) < 1:
        raise AvedgeError(f"the Ray cluster at {address} has no node with a CPU to run trials on")
    if wanted is None:
        return min(c for c in cpus if c >= 1)
    if wanted > max(cpus):
        raise AvedgeError(f"num_cpus={wanted:g} per trial, but the largest node of the Ray "
                          f"cluster at {address} has {max(cpus):g} CPUs; ask for at most that")
    return wanted


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__
