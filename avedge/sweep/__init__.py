"""Accuracy-vs-latency sweeps: every recipe x target x backend, measured on the artifact
that would ship.

    >>> from avedge.sweep import Sweep, run_sweep                          # doctest: +SKIP
    >>> run_sweep(Sweep("tiny-stream", ["fp32", "int8"], ["cpu"]), "out/")  # doctest: +SKIP

Layout (one module each): plan.py validates the user's choices and turns them into trial
specs (plain JSON dicts, so a trial can run in any process or on any host); trial.py runs
one trial (export with avedge.api.export, load with the runtime, the family metric,
latency, size, peak RSS) and never raises; executors.py runs trials (local processes, or
Ray with an address); store.py is the output folder (lock, per-trial results, resume);
pareto.py and report.py write the plot and the HTML report; run.py drives a sweep.

Nothing here imports torch at module level: the CLI validates names before the export
stack loads, and a Ray worker imports only trial.py.
"""

from avedge.sweep.plan import Sweep
from avedge.sweep.run import run_sweep

__all__ = ["Sweep", "run_sweep"]
