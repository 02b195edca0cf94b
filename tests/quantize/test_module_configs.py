"""Module-level compression configs through `quantize_` (quantize/api.py): low-rank,
channel pruning, torchao weight-only int8; and `apply_recipe` on a copy."""

import copy
import json
import math

import pytest
import torch
from avedge.quantize import (
    Int8DynamicConfig,
    Int8WeightOnlyConfig,
    LowRankConfig,
    PruneChannelsConfig,
    Recipe,
    apply_recipe,
    config_from_json,
    config_to_json,
    get_recipe,
    quantize_,
    register_handler,
)
from avedge.quantize.low_rank import factorize
from avedge.runtime.errors import AvedgeError
from torch import nn

MODULE_CONFIGS = [LowRankConfig(rank_ratio=0.5), LowRankConfig(energy=0.9, layers="attention"),
                  PruneChannelsConfig(0.25), PruneChannelsConfig(0.5, importance="activation"),
                  Int8WeightOnlyConfig(), Int8WeightOnlyConfig(per_channel=False)]


def sqnr_db(ref, got) -> float:
    ref, got = ref.detach(), got.detach()
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - got).pow(2).sum()))


def params(m) -> int:
    return sum(p.numel() for p in m.parameters())


class Mlp(nn.Module):
    """Linear layers of an approximately low-rank kind (as trained weights are), an
    fc1/fc2 MLP, a Sequential conv pair and an attention-named projection."""

    def __init__(self, d=48, hidden=96):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        with torch.random.fork_rng():  # the same model every time, global RNG untouched
            torch.manual_seed(0)
            self.attn_q = nn.Linear(d, d)
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)
            self.convs = nn.Sequential(nn.Conv1d(d, 64, 1), nn.ReLU(),
                                       nn.Conv1d(64, d, 3, padding=1))
        with torch.no_grad():  # spectra that decay, like trained weights
            for lin in (self.attn_q, self.fc1, self.fc2, self.convs[0]):
                out_f, in_f = lin.weight.shape[:2]
                r = min(out_f, in_f)
                decay = torch.exp(-torch.arange(r, dtype=torch.float32) / 6)
                u = torch.linalg.qr(torch.randn(out_f, r, generator=g))[0]
                v = torch.linalg.qr(torch.randn(in_f, r, generator=g))[0]
                lin.weight.copy_((u @ torch.diag(decay) @ v.T).reshape(lin.weight.shape))

    def forward(self, x):  # (B, T, D)
        h = x + self.attn_q(x)
        h = h + self.fc2(self.act(self.fc1(h)))
        return self.convs(h.transpose(1, 2)).transpose(1, 2)

    def calibration_inputs(self):
        g = torch.Generator().manual_seed(1)
        return [(torch.randn(1, 10, 48, generator=g),) for _ in range(3)]


@pytest.mark.parametrize("config", MODULE_CONFIGS, ids=repr)
def test_module_configs_round_trip_through_json(config):
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config


@pytest.mark.parametrize("bad", [lambda: LowRankConfig(), lambda: LowRankConfig(0.5, 0.9),
                                 lambda: LowRankConfig(rank_ratio=1.5),
                                 lambda: LowRankConfig(energy=0.9, layers="convs"),
                                 lambda: PruneChannelsConfig(1.0),
                                 lambda: PruneChannelsConfig(0.2, importance="random"),
                                 lambda: Int8WeightOnlyConfig(per_channel="row")])
def test_invalid_module_configs_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize("layer", [nn.Linear(24, 40), nn.Conv1d(24, 40, 1, stride=2)])
def test_factorised_layer_at_full_rank_equals_the_original(layer):
    x = torch.randn(2, 7, 24) if isinstance(layer, nn.Linear) else torch.randn(2, 24, 9)
    torch.testing.assert_close(factorize(layer, 24)(x), layer(x), atol=1e-5, rtol=1e-4)


def test_low_rank_halves_the_linears_keeps_the_output_and_still_exports():
    model, x = Mlp().eval(), torch.randn(1, 10, 48)
    low = quantize_(Mlp().eval(), LowRankConfig(rank_ratio=0.5))
    assert isinstance(low.fc1, nn.Sequential) and low.fc1[0].out_features == 24
    assert isinstance(low.convs[0], nn.Sequential)  # kernel-1 conv: factorised
    assert isinstance(low.convs[2], nn.Conv1d)  # kernel 3: left alone
    assert isinstance(low.attn_q, nn.Linear)  # square at half rank: 24 * 96 saves nothing
    assert params(low.fc1) + params(low.fc2) < 0.8 * (params(model.fc1) + params(model.fc2))
    assert params(low) < params(model)
    snr = sqnr_db(model(x), low(x))
    print(f"low-rank 0.5: {params(model)} -> {params(low)} parameters, SQNR {snr:.1f} dB")
    assert math.isfinite(snr) and snr > 20
    program = torch.export.export(low, (x,))
    torch.testing.assert_close(program.module()(x), low(x))


def test_low_rank_skips_layers_where_it_saves_nothing_and_says_when_nothing_is_left():
    two = nn.Sequential(nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 256))
    out = quantize_(two, LowRankConfig(rank_ratio=0.5))
    assert isinstance(out[0], nn.Linear)  # 24 * (48 + 48) == 48 * 48: kept
    assert isinstance(out[2], nn.Sequential)  # 24 * (48 + 256) < 48 * 256
    with pytest.raises(AvedgeError, match=r"nothing to factorise.*skipped: 0"):
        quantize_(nn.Sequential(nn.Linear(48, 48)), LowRankConfig(rank_ratio=0.5))
    low = quantize_(Mlp().eval(), LowRankConfig(energy=0.99, layers="attention"))
    assert isinstance(low.attn_q, nn.Sequential) and isinstance(low.fc1, nn.Linear)


@pytest.mark.parametrize("importance", ["magnitude", "activation"])
def test_pruning_removes_units_and_channels_physically(importance):
    model, x = Mlp().eval(), torch.randn(1, 10, 48)
    pruned = quantize_(Mlp().eval(), PruneChannelsConfig(0.25, importance=importance))
    assert (pruned.fc1.out_features, pruned.fc2.in_features) == (72, 72)
    assert (pruned.convs[0].out_channels, pruned.convs[2].in_channels) == (48, 48)
    assert pruned(x).shape == model(x).shape and params(pruned) < params(model)


def test_pruning_by_magnitude_drops_the_dead_units_first():
    import copy

    model = Mlp().eval()
    with torch.no_grad():
        model.fc2.weight[:, :24] = 0  # these 24 hidden units reach nothing
    pruned = quantize_(copy.deepcopy(model), PruneChannelsConfig(0.25))
    h = torch.randn(1, 10, 48)
    torch.testing.assert_close(pruned.fc2(pruned.act(pruned.fc1(h))),
                               model.fc2(model.act(model.fc1(h))))
    assert pruned.fc1.out_features == 72


def test_pruning_refuses_a_model_without_pairs_and_activation_needs_data():
    with pytest.raises(AvedgeError, match="nothing to prune.*Linear -> activation -> Linear"):
        quantize_(nn.Sequential(nn.Conv1d(1, 8, 5)), PruneChannelsConfig(0.25))
    with pytest.raises(AvedgeError, match="calibration_inputs.*importance='magnitude'"):
        quantize_(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)),
                  PruneChannelsConfig(0.25, importance="activation"))


def test_weight_only_int8_goes_through_torchao_and_stays_close():
    model, x = Mlp().eval(), torch.randn(1, 10, 48)
    q = quantize_(Mlp().eval(), Int8WeightOnlyConfig())
    assert type(q.fc1.weight).__module__.startswith("torchao")
    assert sqnr_db(model(x), q(x)) > 30
    with pytest.raises(AvedgeError, match="nn.Linear weights.*has none"):
        quantize_(nn.Sequential(nn.Conv1d(1, 8, 5)), Int8WeightOnlyConfig())


def test_apply_recipe_works_on_a_copy_in_order_and_lowering_configs_are_not_module_level():
    model = Mlp().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = Recipe("mix", (PruneChannelsConfig(0.5), LowRankConfig(rank_ratio=0.25),
                            Int8DynamicConfig()))
    out = apply_recipe(model, recipe)
    assert out is not model and isinstance(model.fc1, nn.Linear)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert out.fc1[0].in_features == 48 and out.fc1[1].out_features == 48  # pruned, then split
    assert apply_recipe(model, get_recipe("int8")) is model  # nothing module-level to apply
    with pytest.raises(AvedgeError, match="Int8DynamicConfig is not applied to the module"):
        quantize_(model, Int8DynamicConfig())


def test_a_new_handler_registers_by_decorator():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class ZeroBiasConfig:
        pass

    @register_handler(ZeroBiasConfig)
    def zero_bias(model, config):
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    m = quantize_(nn.Linear(3, 2), ZeroBiasConfig())
    assert torch.count_nonzero(m.bias) == 0
    with pytest.raises(ValueError, match="registered twice"):
        register_handler(ZeroBiasConfig)(zero_bias)


def test_low_rank_on_attention_reaches_multihead_attention_and_still_exports():
    """nn.MultiheadAttention reads its fused weights directly: it is split into q/k/v/out
    Linears (SplitAttention, the same function) and those are factorised; the
    feed-forward layers of the block are left alone."""
    from avedge.quantize.attention import SplitAttention

    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    x = torch.randn(1, 6, 32)
    low = quantize_(copy.deepcopy(block), LowRankConfig(rank_ratio=0.25, layers="attention"))
    attn = low.self_attn
    assert isinstance(attn, SplitAttention)
    assert all(isinstance(getattr(attn, p), nn.Sequential) and getattr(attn, p)[0].out_features
               == 8 for p in ("q_proj", "k_proj", "v_proj", "out_proj"))
    assert isinstance(low.linear1, nn.Linear) and isinstance(low.linear2, nn.Linear)
    assert params(low) < params(block)
    print(f"lowrank-attn-0.25 on a transformer layer: {params(block)} -> {params(low)} "
          f"parameters, SQNR {sqnr_db(block(x), low(x)):.1f} dB")
    program = torch.export.export(low, (x,))
    torch.testing.assert_close(program.module()(x), low(x))
    # half rank of a square projection saves nothing: nothing to factorise, said so
    with pytest.raises(AvedgeError, match=r"attention projections only\): no layer where"):
        quantize_(copy.deepcopy(block), LowRankConfig(rank_ratio=0.5, layers="attention"))
