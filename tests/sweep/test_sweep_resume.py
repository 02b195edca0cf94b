"""A sweep killed mid-trial and restarted runs only the unfinished trial; while it runs, a
second sweep on its folder is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avedge.cli import main


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def starts(trial: Path) -> list[dict]:
    log = trial / "starts.jsonl"
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
def test_killed_sweep_resumes_running_only_the_unfinished_trial(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "tiny-stream", "--recipes", "fp32,int8", "--targets", "cpu",
            "--backends", "onnxruntime", "--runs", "20", "--warmup", "2", "--out", str(out)]
    first, second = (out / "trials" / f"{r}__cpu__onnxruntime" for r in ("fp32", "int8"))
    sweep = subprocess.Popen([sys.executable, "-m", "avedge", *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (first / "result.json").exists() and starts(second), 180,
                 "the first trial to finish and the second to start")
        # A second sweep on the same folder, while this one runs: refused, naming it.
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"another sweep (pid {sweep.pid}) is writing {out}" in err
        sweep.send_signal(signal.SIGKILL)  # mid-trial: nothing of the driver runs after this
        sweep.wait()
    finally:
        sweep.kill()
        sweep.wait()
    (victim,) = starts(second)
    wait_for(lambda: not alive(victim["pid"]), 10, "the orphaned trial to die with the sweep")
    assert not (second / "result.json").exists()
    assert (first / "result.json").exists()
    kept = (first / "artifact" / "manifest.json").stat().st_mtime_ns

    assert main(argv) == 0
    assert len(starts(first)) == 1  # finished: not run again, artifact kept
    assert [s["attempt"] for s in starts(second)] == [1, 2]
    assert (first / "artifact" / "manifest.json").stat().st_mtime_ns == kept
    summary = json.loads((out / "results.json").read_text())
    assert summary["counts"] == {"ok": 2, "skipped": 0, "failed": 0}
    assert summary["timing"]["trials_run"] == 1
    results = {t["trial_id"]: t for t in summary["trials"]}
    assert results[second.name]["attempt"] == 2 and results[first.name]["attempt"] == 1
    assert not list(second.glob(".artifact.*"))  # the killed export's staging folder is gone
