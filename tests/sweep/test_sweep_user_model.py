"""A user's own model (`module:factory`) with a `--metric module:function`; a trial that
fails is recorded with its error and the sweep goes on."""

from __future__ import annotations

import json
import textwrap

import pytest
from avedge.runtime import load

from avedge.cli import main

USER_MODULE = textwrap.dedent('''
    import numpy as np
    import torch
    from torch import nn


    class Net(nn.Module):
        input_names = ["x"]
        output_names = ["y"]

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc1, self.fc2 = nn.Linear(64, 256), nn.Linear(256, 8)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))


    def factory():
        return Net().eval(), (torch.randn(1, 64),)


    def broken():
        raise RuntimeError("the factory could not find its data")


    def agreement(session):
        """How close the artifact is to the float model on fixed inputs (higher: closer)."""
        x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
        got = session.run_ordered([x])[0]
        with torch.no_grad():
            ref = factory()[0](torch.from_numpy(x)).numpy()
        return {"name": "neg_max_abs_err", "value": -float(np.abs(got - ref).max())}
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "sweep_user_model.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # trial processes get the same import path
    return "sweep_user_model"


@pytest.mark.slow
def test_user_model_with_its_metric(tmp_path, user_module, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", f"{user_module}:factory", "--recipes", "fp32,prune-0.25", "--targets",
                 "cpu", "--backends", "onnxruntime", "--metric", f"{user_module}:agreement",
                 "--runs", "20", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trials = {t["recipe"]: t for t in summary["trials"]}
    assert summary["counts"]["ok"] == 2, summary["trials"]
    import importlib

    agreement = importlib.import_module(user_module).agreement
    for t in trials.values():
        # What the sweep recorded is what the function says of the saved artifact.
        again = agreement(load(t["artifact"], backend="onnxruntime"))
        assert t["metric"] == again
    assert trials["fp32"]["metric"]["value"] > -1e-5  # float: the same function
    # fc1 -> relu -> fc2 is a pair the pruning recipe applies to: a quarter of the hidden
    # units go, so the file shrinks and the output moves away from the float model's.
    assert trials["prune-0.25"]["metric"]["value"] < trials["fp32"]["metric"]["value"]
    assert trials["prune-0.25"]["size_bytes"] < 0.85 * trials["fp32"]["size_bytes"]
    # How far the pruning itself moved the eager output is shown beside the metric (the
    # artifact's parity is against the pruned module); fp32 changed no module.
    assert trials["fp32"]["recipe_deviation"] is None
    assert trials["prune-0.25"]["recipe_deviation"] > 0
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "recipe_deviation" in header


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, user_module, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", f"{user_module}:broken", "--recipes", "fp32,int8", "--targets",
                 "cpu", "--backends", "onnxruntime", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "results.json").read_text())
    assert summary["counts"] == {"ok": 0, "skipped": 0, "failed": 2}
    for t in summary["trials"]:
        assert t["error"] == "RuntimeError: the factory could not find its data"
        assert "Traceback" in (out / "trials" / t["trial_id"] / "error.txt").read_text()
        assert f"{t['trial_id']}: failed: RuntimeError: the factory" in text

    # Resumed: failed trials are finished trials (not run again) unless --retry-failed.
    argv = ["sweep", f"{user_module}:broken", "--targets", "cpu", "--backends", "onnxruntime",
            "--out", str(out)]
    assert main([*argv, "--recipes", "fp32,int8"]) == 0
    assert json.loads((out / "results.json").read_text())["timing"]["trials_run"] == 0
    assert main([*argv, "--recipes", "fp32", "--retry-failed"]) == 0
    (t,) = json.loads((out / "results.json").read_text())["trials"]
    assert t["trial_id"] == "fp32__cpu__onnxruntime" and t["attempt"] == 2
    assert t["status"] == "failed"
