"""The lip reader's three token-rate graphs are views of one module: a recipe they all
take is applied to that module once (Family.compression_view: every rate on shared
features), and the three graphs are drawn from the one compressed module, so they carry
the same compressed weights (and a data-dependent recipe is computed once, on every
rate's path)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from avedge.models.lipreader import model as lr
from avedge.targets import get_target

from avedge import api

TINY = {"stem_channels": 4, "cnn_channels": (8, 8, 8), "d_model": 16, "heads": 2, "ffn": 16,
        "layers": 1, "n_mels": 16}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    # No voice bank: calibration falls back to perturbed example inputs (no cache read).
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(tmp_path / "no-bank"))
    torch.manual_seed(0)
    m = lr.LipReader(lr.Dims(**TINY)).eval()
    return m, lr.example_inputs(m)


@pytest.fixture
def applied(monkeypatch):
    """Every module apply_recipe compresses, in order."""
    from avedge.targets import lowering

    seen = []
    real = lowering.apply_recipe

    def counting(module, recipe, example_inputs=None):
        seen.append(module)
        return real(module, recipe, example_inputs)

    monkeypatch.setattr(lowering, "apply_recipe", counting)
    return seen


def onnx_initializers(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]


@pytest.mark.slow
def test_pruned_rate_graphs_share_the_one_pruned_module(tmp_path, monkeypatch, tiny, applied):
    from avedge.targets import lowering

    model, example = tiny
    lowered = []  # the module each lowering was given
    real = lowering.FORMAT_LOWERERS["onnx"]

    def spy(job):
        lowered.append(job.module)
        return real.lower(job)

    monkeypatch.setitem(lowering.FORMAT_LOWERERS, "onnx", dataclasses.replace(real, lower=spy))
    onnx_cpu = dataclasses.replace(get_target("cpu"), backends=("onnxruntime",))
    art = api.export(model, onnx_cpu, tmp_path / "a", recipe="prune-heads-0.5",
                     example_inputs=example, family="lipreader", measure=False)

    # Applied once, to the all-rates view; the caller's module keeps its heads.
    assert len(applied) == 1 and isinstance(applied[0], lr.AllRates)
    assert model.blocks[0].att.num_heads == 2
    # The three graphs, rates 1, 2 and 4, are views of one pruned module.
    assert [g.rate for g in lowered] == [1, 2, 4]
    shared = lowered[0].model
    assert all(g.model is shared for g in lowered)
    att = shared.blocks[0].att
    assert att.num_heads == 1 and att.q_proj.weight.shape == (8, 16)
    # The files hold that module's pruned weights: the same projection in every graph.
    q = att.q_proj.weight.detach().numpy()
    for rate in ("rate1", "rate2", "rate4"):
        inits = onnx_initializers(art.path / rate / "model.onnx")
        assert any(a.shape == q.shape and np.array_equal(a, q)
                   or a.shape == q.T.shape and np.array_equal(a, q.T) for a in inits), rate
        m = json.loads((art.path / rate / "manifest.json").read_text())
        assert m["recipe"] == "prune-heads-0.5" and m["recipe_source"] == "user"
        assert m["recipe_deviation"]["rel_err"] > 0  # half the heads went
        assert m["parity"]["onnx"]["rel_err"] < 1e-3  # against the pruned module itself


def test_a_data_dependent_recipe_is_computed_once_on_every_rate(tiny, applied):
    from avedge.targets.export import SharedCompression

    model, example = tiny
    p = api.plan(model, "cpu", "prune-taylor-0.25", example_inputs=example, family="lipreader")
    components, shared = api.compress_once(p)
    # Taylor importance was scored once, on the view that runs every rate's head.
    assert len(applied) == 1 and isinstance(applied[0], lr.AllRates)
    assert isinstance(shared, SharedCompression)
    graphs = [c.module for c, _ in components]
    assert [g.rate for g in graphs] == [1, 2, 4]
    assert all(g.model is graphs[0].model for g in graphs)
    assert graphs[0].model is not model  # a compressed copy: smaller than the original
    assert sum(p.numel() for p in graphs[0].model.parameters()) < \
        sum(p.numel() for p in model.parameters())
    # Each graph's uncompressed twin is kept for the recipe's deviation.
    assert [shared.uncompressed[c.name].model for c, _ in components] == [model] * 3


def test_the_layers_kept_fp32_are_ranked_once_for_all_rates(tiny, applied):
    model, example = tiny
    p = api.plan(model, "cpu", "int8-keep-1", example_inputs=example, family="lipreader")
    components, shared = api.compress_once(p)
    assert components == p.components  # no module-level config: the graphs as planned
    keep, ranking = shared.decided["kept_float"]
    assert len(keep) == 1 and ranking  # one layer, from one ranking over every rate
    names = {n for n, _ in components[0][0].module.named_modules()}
    assert keep[0] in names  # named as in the graphs (the view holds the model as .model)


def test_graphs_with_different_recipes_are_compressed_each_on_its_own(tiny):
    import dataclasses as dc

    model, example = tiny
    p = api.plan(model, "cpu", "prune-heads-0.5", example_inputs=example, family="lipreader")
    mixed = dc.replace(p, components=[(dc.replace(c, recipe="fp32") if c.name == "rate4" else c,
                                       s) for c, s in p.components])
    assert api.compress_once(mixed) == (mixed.components, None)
