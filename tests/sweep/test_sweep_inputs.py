"""avedge sweep: bad input refused before anything is written, the folder lock, refused
recipes and missing backends recorded as skipped, resume settings, the Pareto front,
`avedge recipes`. Nothing here exports a model (refused trials start no process; the
missing backend costs one), so it runs in seconds."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time

import pytest
from avedge.quantize import get_recipe, recipe_names
from avedge.targets import get_target, list_targets
from avedge.targets.lowering import FORMAT_LOWERERS, recipes_for, refusal

from avedge.cli import main
from avedge.sweep.pareto import front


def test_unknown_recipe_is_refused_with_the_known_ones_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny-stream", "--recipes", "fp32,int9,nope", "--targets", "cpu",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'int9', 'nope'" in err and f"known: {', '.join(recipe_names())}" in err
    assert not out.exists()


def test_parametric_recipes_are_known_to_a_sweep():
    from avedge.sweep.plan import Sweep, validate

    sweep = validate(Sweep("tiny-stream", ["int8-keep-2", "int8-static-keep-1"], ["cpu"]))
    assert sweep.recipes == ["int8-keep-2", "int8-static-keep-1"]
    with pytest.raises(Exception, match="'int8-keep-0'"):  # K >= 1
        validate(Sweep("tiny-stream", ["int8-keep-0"], ["cpu"]))


@pytest.mark.parametrize("args, says", [
    (["--targets", "toaster"], "unknown target 'toaster'"),
    (["--targets", "cpu", "--backends", "tpu"], "unknown backend 'tpu'"),
    (["--targets", "cpu", "--eval", "0"], "--eval must be an integer >= 1"),
    (["--targets", "cpu", "--weights", "/no/such.safetensors"], "is not a file"),
    (["--targets", "cpu", "--metric", "json:no_such_fn"], "has no callable 'no_such_fn'"),
    (["--targets", "cpu", "--workers", "0"], "--workers must be an integer >= 1"),
])
def test_bad_choices_are_one_line_and_write_nothing(tmp_path, capsys, args, says):
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny-stream", "--recipes", "fp32", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not out.exists()


def _refused_sweep(out, *extra) -> list[str]:
    """fp32 on the NPU board: refused by its lowering (integer only), so no trial runs."""
    return ["sweep", "tiny-stream", "--recipes", "fp32", "--targets", "hearable-npu",
            "--out", str(out), *extra]


def test_a_recipe_the_target_refuses_is_recorded_as_skipped_with_the_reason(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*_refused_sweep(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (trial,) = summary["trials"]
    expected = refusal(get_recipe("fp32"), get_target("hearable-npu"))
    assert expected and trial["status"] == "skipped" and trial["reason"] == expected
    assert summary["counts"] == {"ok": 0, "skipped": 1, "failed": 0}
    for name in ("results.csv", "results.json", "pareto.png", "report.html"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "trials" / trial["trial_id"] / "result.json").read_text()) == trial
    assert expected in (out / "results.csv").read_text()
    assert html.escape(expected) in (out / "report.html").read_text()


def test_a_cpu_recipe_refusal_is_the_lowering_s_own(tmp_path, capsys):
    """Whatever the CPU target refuses today (the list moves as lowerers learn configs)."""
    cpu = get_target("cpu")
    refused = [r for r in recipe_names() if r not in recipes_for(cpu)]
    if not refused:
        pytest.skip("the cpu target takes every recipe today")
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny-stream", "--recipes", refused[0], "--targets", "cpu",
                 "--out", str(out), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert {t["backend"] for t in trials} == set(cpu.backends)
    assert all(t["status"] == "skipped"
               and t["reason"] == refusal(get_recipe(refused[0]), cpu) for t in trials)


def test_resuming_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(_refused_sweep(out, "--eval", "2")) == 0
    capsys.readouterr()
    assert main(_refused_sweep(out, "--eval", "3")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "eval_n: 2 there, 3 now" in err


def test_a_folder_that_holds_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(_refused_sweep(tmp_path)) == 2
    assert "holds other files and no sweep" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_two_sweeps_on_one_folder_the_second_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(_refused_sweep(out)) == 0  # a sweep folder
    capsys.readouterr()
    before = (out / "results.json").read_bytes()
    # Another sweep holds the folder's lock (in another process, as a running sweep would).
    hold = ("import sys, time\nfrom avedge.sweep.store import SweepFolder\n"
            "with SweepFolder(sys.argv[1]).locked():\n    print('held', flush=True)\n"
            "    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(_refused_sweep(out)) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"avedge sweep: error: another sweep (pid {holder.pid}) is writing "
                       f"{out}; wait for it to finish or choose another --out")
        assert (out / "results.json").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert main(_refused_sweep(out)) == 0  # the lock died with its holder


def test_pareto_front_keeps_the_points_nothing_beats():
    pts = [{"trial_id": t, "latency_median_ms": ms, "v": v} for t, ms, v in
           [("slow-good", 3.0, 9.0), ("fast-bad", 1.0, 2.0), ("dominated", 2.0, 1.5),
            ("mid", 2.0, 5.0), ("worse-and-slower", 4.0, 8.0)]]
    got = [p["trial_id"] for p in front(pts, lambda p: p["v"], higher_is_better=True)]
    assert got == ["fast-bad", "mid", "slow-good"]
    low = [p["trial_id"] for p in front(pts, lambda p: p["v"], higher_is_better=False)]
    assert low == ["fast-bad", "dominated"]  # lower is better: nothing slower beats 1.5


def test_recipes_lists_every_recipe_with_what_it_applies_to_and_its_targets(capsys):
    from avedge.quantize import is_module_level

    assert main(["recipes", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(listed) == recipe_names()
    targets = list_targets()
    for name, r in listed.items():
        assert r["targets"] == [t.name for t in targets if name in recipes_for(t)]
        configs = get_recipe(name).configs
        assert [c["type"] for c in r["configs"]] == [type(c).__name__ for c in configs]
        for c, config in zip(r["configs"], configs):
            assert c["applies_to"] == ("module" if is_module_level(config) else "lowering")
            if not is_module_level(config):
                assert c["formats"] == [f for f, low in FORMAT_LOWERERS.items()
                                        if isinstance(config, low.accepts)] != []
    assert "hearable-npu" in listed["int8-static"]["targets"]
    assert "hearable-npu" not in listed["fp32"]["targets"]
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    assert "int8-static\n  Int8StaticConfig(" in text and "targets: " in text


def test_a_backend_this_machine_lacks_is_recorded_as_skipped(tmp_path, capsys):
    """Decided in the trial's own process (on a cluster, the host that runs it)."""
    from avedge.runtime.backends import backend_class

    missing = [(t.name, b) for t in list_targets() if "fp32" in recipes_for(t)
               for b in t.backends if backend_class(b).unavailable_reason()]
    if not missing:
        pytest.skip("every backend of every target is available here")
    target, backend = missing[0]
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny-stream", "--recipes", "fp32", "--targets", target,
                 "--backends", backend, "--out", str(out), "--json"]) == 0
    (t,) = json.loads(capsys.readouterr().out)["trials"]
    assert t["status"] == "skipped" and t["attempt"] == 1  # it ran, and found no backend
    assert t["reason"] == (f"backend {backend!r} is not available on this machine "
                           f"({backend_class(backend).unavailable_reason()})")
