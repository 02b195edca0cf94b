"""Structured pruning through torch-pruning (quantize/structured_prune.py): attention heads,
feed-forward and conv widths removed physically, by magnitude or Taylor score; the
pruned model still exports and lowers."""

import copy
import json

import pytest
import torch
from avedge.quantize import apply_recipe, config_from_json, config_to_json, get_recipe, quantize_
from avedge.quantize.api import using
from avedge.quantize.attention import SplitAttention, split_attention
from avedge.quantize.structured_prune import PruneHeadsConfig, StructuredPruneConfig
from avedge.runtime.errors import AvedgeError
from torch import nn

CONFIGS = [PruneHeadsConfig(0.5), PruneHeadsConfig(0.25, importance="taylor"),
           StructuredPruneConfig(0.25), StructuredPruneConfig(0.5, "taylor", target="conv")]


def params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def sqnr_db(ref, got) -> float:
    ref, got = ref.detach(), got.detach()
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - got).pow(2).sum()))


class Block(nn.Module):
    """A pre-norm transformer block (nn.MultiheadAttention + FFN) and a conv branch."""

    def __init__(self, d=32, heads=4, hidden=64):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)
            self.conv = nn.Sequential(nn.Conv1d(d, 48, 3, padding=1), nn.BatchNorm1d(48),
                                      nn.ReLU(), nn.Conv1d(48, d, 1))

    def forward(self, x):  # (B, T, D)
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.fc2(self.act(self.fc1(self.norm2(x))))
        return x + self.conv(x.transpose(1, 2)).transpose(1, 2)


X = torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(1))


def pruned(model, config, x=X):
    with using(model, (x,)):
        return quantize_(copy.deepcopy(model), config)


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_configs_round_trip_through_json(config):
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config


@pytest.mark.parametrize("bad", [lambda: PruneHeadsConfig(1.0), lambda: PruneHeadsConfig(0),
                                 lambda: PruneHeadsConfig(0.5, importance="random"),
                                 lambda: StructuredPruneConfig(0.5, target="heads"),
                                 lambda: StructuredPruneConfig(0.5, calibration_batches=0)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize("batch_first", [True, False])
def test_split_attention_computes_what_multihead_attention_does(batch_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=batch_first).eval()
    split = copy.deepcopy(layer)
    assert split_attention(split) == 1 and isinstance(split.self_attn, SplitAttention)
    x = torch.randn(2, 7, 32) if batch_first else torch.randn(7, 2, 32)
    mask = torch.ones(7, 7, dtype=torch.bool).triu(1)
    torch.testing.assert_close(split(x), layer(x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(split(x, src_mask=mask), layer(x, src_mask=mask),
                               atol=1e-5, rtol=1e-4)
    out, weights = split.self_attn(x, x, x, attn_mask=mask)
    ref, ref_weights = layer.self_attn(x, x, x, attn_mask=mask)
    torch.testing.assert_close((out, weights), (ref, ref_weights), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_half_the_heads_are_removed_physically(importance):
    model = Block().eval()
    out = pruned(model, PruneHeadsConfig(0.5, importance=importance))
    attn = out.attn
    assert isinstance(attn, SplitAttention) and attn.num_heads == 2
    assert attn.q_proj.out_features == attn.v_proj.out_features == 16
    assert attn.out_proj.in_features == 16 and attn.out_proj.out_features == 32
    assert params(out) < params(model) and out(X).shape == model(X).shape
    assert out.fc1.out_features == 64  # heads only


def test_taylor_drops_the_head_that_reaches_nothing_and_magnitude_does_not():
    """Head 0 has the largest q/k/v weights but zero out_proj columns: by magnitude it
    looks the most important; its effect on the output (Taylor) is nil."""
    model = Block().eval()
    split_attention(model)
    with torch.no_grad():
        for proj in (model.attn.q_proj, model.attn.k_proj, model.attn.v_proj):
            proj.weight[:8] *= 4
        model.attn.out_proj.weight[:, :8] = 0
    taylor = pruned(model, PruneHeadsConfig(0.25, importance="taylor"))
    magnitude = pruned(model, PruneHeadsConfig(0.25))
    torch.testing.assert_close(taylor(X), model(X), atol=1e-5, rtol=1e-4)  # lost nothing
    assert not torch.allclose(magnitude(X), model(X), atol=1e-3)
    assert taylor.attn.num_heads == magnitude.attn.num_heads == 3


def test_ffn_and_conv_widths_are_cut_and_the_residual_stream_is_kept():
    model = Block().eval()
    out = pruned(model, StructuredPruneConfig(0.5, target="all"))
    assert (out.fc1.out_features, out.fc2.in_features) == (32, 32)
    assert (out.conv[0].out_channels, out.conv[1].num_features, out.conv[3].in_channels) == (
        24, 24, 24)
    assert out.fc2.out_features == out.conv[3].out_channels == 32  # the residual width
    assert out.norm1.normalized_shape == (32,)
    ffn = pruned(model, StructuredPruneConfig(0.5, target="ffn"))
    assert ffn.fc1.out_features == 32 and ffn.conv[0].out_channels == 48
    conv = pruned(model, StructuredPruneConfig(0.5, target="conv"))
    assert conv.fc1.out_features == 64 and conv.conv[0].out_channels == 24
    assert params(conv) < params(model) and params(out) < min(params(ffn), params(conv))


def test_taylor_keeps_the_units_that_matter_where_magnitude_is_fooled():
    model = Block().eval()
    with torch.no_grad():  # 16 hidden units with big input weights that reach nothing
        model.fc1.weight[:16] *= 5
        model.fc2.weight[:, :16] = 0
    taylor = pruned(model, StructuredPruneConfig(0.25, "taylor", target="ffn"))
    magnitude = pruned(model, StructuredPruneConfig(0.25, target="ffn"))
    assert taylor.fc1.out_features == magnitude.fc1.out_features == 48
    torch.testing.assert_close(taylor(X), model(X), atol=1e-5, rtol=1e-4)
    assert sqnr_db(model(X), magnitude(X)) < 60


def test_recipes_that_do_not_apply_say_why_in_one_line():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    x = (torch.randn(2, 8),)
    with pytest.raises(AvedgeError, match="PruneHeadsConfig found no attention in Sequential") as e:
        apply_recipe(mlp, get_recipe("prune-heads-0.5"), x)
    assert "\n" not in str(e.value)
    with pytest.raises(AvedgeError, match=r"target='conv'\) found no hidden width"):
        apply_recipe(mlp, get_recipe("prune-conv-0.25"), x)
    with pytest.raises(AvedgeError, match="needs inputs.*example_inputs"):
        quantize_(copy.deepcopy(mlp), StructuredPruneConfig(0.25))
    residual_only = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(AvedgeError, match="no hidden width"):
        apply_recipe(residual_only, get_recipe("prune-taylor-0.25"), x)
    one_head = nn.MultiheadAttention(8, 1, batch_first=True)
    with pytest.raises(AvedgeError, match="removes no head"):
        quantize_(one_head, PruneHeadsConfig(0.5))


def test_an_add_of_the_input_is_not_taken_for_a_hidden_width():
    class Skip(nn.Module):  # a's output is added to the model input: not a hidden width
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            return self.b(x + self.a(x))

    model = Skip().eval()
    with pytest.raises(AvedgeError, match="no hidden width"):
        apply_recipe(model, get_recipe("prune-taylor-0.25"), (torch.randn(2, 8),))


@pytest.mark.slow
def test_pruned_transformer_block_exports_to_pte_and_onnx(tmp_path):
    from avedge import api

    model = Block().eval()
    art = api.export(model, "cpu", tmp_path / "heads", recipe="prune-heads-0.5",
                     example_inputs=(X,), measure=False)
    man = art.manifest
    assert {"model.pte", "model.onnx"} <= set(man["files"])
    assert man["parameters"] < params(model)
    assert man["inputs"][0]["shape"] == [1, 6, 32] and man["outputs"][0]["shape"] == [1, 6, 32]
    for fmt in ("pte", "onnx"):
        print(f"prune-heads-0.5 {fmt}: parity {man['parity'][fmt]}")
        assert man["parity"][fmt]["rel_err"] < 1
    # what the runtime runs is the pruned graph: it matches the pruned module
    expected = apply_recipe(model, get_recipe("prune-heads-0.5"), (X,))(X).detach().numpy()
    for backend in ("onnxruntime", "executorch"):
        got = art.load(backend=backend).run(**{man["inputs"][0]["name"]: X.numpy()})
        assert abs(got[man["outputs"][0]["name"]] - expected).max() < 1e-4


@pytest.mark.slow
def test_tiny_speech_extractor_pruned_a_quarter_still_exports_for_cpu(tmp_path):
    from avedge.models.speech_extractor import model as se

    from avedge import api

    torch.manual_seed(0)
    m = se.build(se.Dims(d_model=16, d_hidden=32, n_blocks=2)).eval()
    art = api.export(m, "cpu", tmp_path / "se", recipe="prune-taylor-0.25",
                     example_inputs=se.example_inputs(m), measure=False)
    man = art.manifest
    assert {"model.pte", "model.onnx"} <= set(man["files"])
    assert man["parameters"] == params(m) - 2 * 8 * (16 + 16 + 1)  # 8 of 32 units per block
    # the manifest describes the graph (inputs read from it), not the stale dims
    assert [i["shape"] for i in man["inputs"]] == [list(t.shape) for t in se.example_inputs(m)]
    assert all(man["parity"][f]["rel_err"] < 1 for f in ("pte", "onnx"))
