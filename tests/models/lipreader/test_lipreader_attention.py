"""The lip reader's attention has the layout quantize/ prunes: heads come off for real."""

from __future__ import annotations

import torch
from avedge.models.lipreader import model as lr
from avedge.quantize.structured_prune import PruneHeadsConfig, prune_heads

TINY = lr.Dims(stem_channels=4, cnn_channels=(8, 8, 8), d_model=16, heads=4, ffn=16, layers=2)


def test_weights_saved_with_the_old_projection_names_still_load(tmp_path):
    model = lr.LipReader(TINY).eval()
    old = {}
    for k, v in model.state_dict().items():  # rename to the names the first weights used
        for new, legacy in (("q_proj.", "q."), ("k_proj.", "k."), ("v_proj.", "v."),
                            ("out_proj.", "out.")):
            k = k.replace(f"att.{new}", f"att.{legacy}")
        old[k] = v
    assert any(".att.q.weight" in k for k in old)
    fresh = lr.LipReader(TINY).eval()
    fresh.load_state_dict(old)  # strict: every tensor found under its new name
    ex = lr.example_inputs(model)
    assert torch.equal(lr.AtRate(fresh, 1)(*ex), lr.AtRate(model, 1)(*ex))


def test_prune_heads_removes_half_the_heads_of_every_block():
    torch.manual_seed(0)
    model = lr.LipReader(TINY).eval()
    ex = lr.example_inputs(model)
    before = sum(p.numel() for p in model.parameters())
    prune_heads(model, PruneHeadsConfig(ratio=0.5))
    atts = [m for m in model.modules() if isinstance(m, lr.SelfAttention)]
    assert len(atts) == TINY.layers and all(a.num_heads == 2 for a in atts)
    assert all(a.q_proj.out_features == 8 and a.out_proj.in_features == 8 for a in atts)
    assert sum(p.numel() for p in model.parameters()) < before
    for rate in lr.RATES:  # every rate's graph still runs on the smaller attention
        out = lr.AtRate(model, rate)(*ex)
        assert out.shape[-1] == 29 and torch.isfinite(out).all()
