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


def test_local_attention_keeps_each_output_to_its_neighbourhood():
    """attention_window W: an output frame depends on the input only within the blocks'
    reach (W frames of attention + 3 of depthwise convolution per block, + the front-end's
    few frames); with W = 0 the whole window reaches every output."""
    import dataclasses

    torch.manual_seed(0)
    audio = 0.1 * torch.randn(1, lr.WINDOW * lr.HOP_SAMPLES)
    far = audio.clone()
    far[:, 70 * lr.HOP_SAMPLES:] = 0.1 * torch.randn(1, 30 * lr.HOP_SAMPLES)  # frames 70+
    video, mod = torch.zeros(1, lr.WINDOW, lr.ROI, lr.ROI), torch.tensor([[0.0, 1.0]])
    for window, local in ((8, True), (0, False)):
        model = lr.LipReader(dataclasses.replace(TINY, attention_window=window)).eval()
        for rate in lr.RATES:
            with torch.no_grad():
                a, b = (model(video, x, mod, rate)[0] for x in (audio, far))
            k = lr.OUTPUTS_PER_FRAME
            # Reach of 2 blocks: 2 x (8 + 3 x rate) frames, + 4 for pooling and front-end.
            first_free = (2 * (8 + 3 * rate) + 4) * k
            same = torch.allclose(a[: 70 * k - first_free], b[: 70 * k - first_free])
            assert same == local, (window, rate)
            assert not torch.allclose(a[70 * k:], b[70 * k:])
