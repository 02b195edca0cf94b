"""Per-layer sensitivity and the mixed-precision recipe that keeps the worst layers fp32."""

import pytest
import torch
from avedge.quantize.sensitivity import (
    int8_fake_quant,
    output_error_score,
    quantizable_layers,
    sensitivity,
)
from avedge.runtime.errors import AvedgeError


class Fragile(torch.nn.Module):
    """Three Linear layers; `fragile` has one huge weight per output row, so one int8 scale
    per row leaves its other weights at zero: int8 breaks it, and only it."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp, self.fragile, self.out = (torch.nn.Linear(32, 32) for _ in range(3))
        with torch.no_grad():
            for lin in (self.inp, self.fragile, self.out):
                lin.weight.copy_(torch.randn(32, 32, generator=g) / 6)
            self.fragile.weight[:, 0] = 40.0  # input 0 is near zero below: harmless in float

    def forward(self, x):  # (1, T, 32)
        h = torch.relu(self.inp(x))
        h = h * torch.cat([torch.full_like(h[..., :1], 1e-3), torch.ones_like(h[..., 1:])], -1)
        return self.out(torch.relu(self.fragile(h)))


@pytest.fixture(scope="module")
def fragile():
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))
    return Fragile().eval(), (x,)


def test_sensitivity_ranks_the_fragile_layer_first_and_restores_the_model(fragile):
    model, (x,) = fragile
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = model(x).detach()

    def snr_db(m):  # a synthetic task metric: output SNR against the float model, dB
        err = (m(x) - ref).pow(2).mean()
        return float(10 * torch.log10(ref.pow(2).mean() / err.clamp(min=1e-20)))

    rows = sensitivity(model, snr_db)
    assert rows[0]["layer"] == "fragile"
    assert rows[0]["drop"] > rows[1]["drop"] + 10  # dB: clearly apart, not a tie
    assert {r["layer"] for r in rows} == {"inp", "fragile", "out"}
    assert all(r["kind"] == "Linear" and r["score"] < 200 for r in rows)  # each moved the output
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model(x), ref)  # no hook left behind


def test_output_error_ranking_agrees_and_fake_quant_is_int8(fragile):
    model, (x,) = fragile
    rows = sensitivity(model, output_error_score(model, [(x,)]))
    assert rows[0]["layer"] == "fragile" and rows[-1]["drop"] > 0
    with int8_fake_quant(model, "inp"):
        w = model.inp.weight
        scale = w.abs().amax(1, keepdim=True) / 127
        assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-3)  # on the grid
    with (pytest.raises(AvedgeError, match=r"'nope' is not a Linear/Conv layer.*inp, fragile"),
          int8_fake_quant(model, "nope")):
        pass
    assert quantizable_layers(model) == ["inp", "fragile", "out"]


@pytest.mark.slow
def test_mixed_precision_keeps_the_most_sensitive_layer_float(tmp_path, fragile):
    from avedge.targets import get_target

    model, example = fragile
    plain = get_target("cpu").export(model, example, tmp_path / "int8", recipe="int8")
    keep = get_target("cpu").export(model, example, tmp_path / "keep1", recipe="int8-keep-1")
    m = keep.manifest
    for fmt in ("pte", "onnx"):
        q = m["quantization"][fmt]
        assert q["kept_float"] == ["fragile"], q
        assert q["sensitivity"]["layers"][0]["layer"] == "fragile"
        assert (q["int8_compute_ops"], q["float_compute_ops"]) == (2, 1)
        assert plain.manifest["quantization"][fmt]["int8_compute_ops"] == 3
        # Keeping it float repairs what int8 broke, measured in the real runtime.
        assert m["parity"][fmt]["rel_err"] < 0.5 * plain.manifest["parity"][fmt]["rel_err"]
    assert m["recipe_configs"][1] == {"type": "KeepFloatConfig", "layers": [], "top": 1}


def test_a_layer_name_that_is_not_in_the_model_is_refused(tmp_path, monkeypatch, fragile):
    from avedge.quantize import recipes
    from avedge.quantize.configs import Int8DynamicConfig, KeepFloatConfig
    from avedge.targets import get_target

    monkeypatch.setitem(recipes.RECIPES, "keep-x",
                        (Int8DynamicConfig(), KeepFloatConfig(layers=("blocks.9",))))
    with pytest.raises(AvedgeError, match=r"KeepFloatConfig names blocks.9.*inp, fragile, out"):
        get_target("cpu").export(*fragile, tmp_path / "x", recipe="keep-x")
    with pytest.raises(AvedgeError, match=r"top=4\) keeps more layers than Fragile has \(3\)"):
        get_target("cpu").export(*fragile, tmp_path / "y", recipe="int8-keep-4")
    assert not any(tmp_path.iterdir())


def test_family_score_needs_a_metric():
    from avedge.models.registry import get_family
    from avedge.quantize.sensitivity import family_score

    with pytest.raises(AvedgeError, match="tiny-stream.*has no score_module"):
        family_score(get_family("tiny-stream"), 2)


@pytest.mark.slow
def test_speech_extractor_eager_score_matches_the_artifact_metric(tmp_path, monkeypatch):
    """score_module (eager, used by sensitivity) and measure (the exported artifact through
    the runtime) score the same val mixtures: on an fp32 export they agree."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices
    from avedge.models.registry import get_family
    from avedge.models.speech_extractor import model as se

    import avedge

    bank = tmp_path / "bank"
    voicebank.build_bank(bank, voices=small_bank_voices({"val": 2}), n_per_voice={"espeak": 2},
                         seed=0)
    monkeypatch.setenv("AVEDGE_VOICEBANK", str(bank))
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    se.save_weights(se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)), weights)
    art = avedge.export("speech-extractor", "cpu", tmp_path / "a", recipe="fp32",
                        weights=str(weights))
    fam = get_family("speech-extractor")
    eager = fam.score_module(se.load_weights(weights), art.manifest["metric"]["n"])
    assert eager["backend"] == "eager" and eager["eval_set"]["seed"] == art.manifest[
        "metric"]["eval_set"]["seed"]
    assert eager["value"] == pytest.approx(art.manifest["metric"]["value"], abs=0.02)
