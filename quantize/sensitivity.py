"""Per-layer quantization sensitivity: quantize one layer at a time, score, compare.

    rows = sensitivity(model, score)          # score(model) -> float, higher is better
    # [{"layer": "blocks.3.fc1", "kind": "Linear", "score": 7.9, "drop": 0.41}, ...]

Each Linear / Conv1d / Conv2d is fake-quantized alone the way dynamic int8 runs it (int8
weights with one symmetric scale per output channel; the layer's input quantized per call
to int8 with an asymmetric per-tensor scale) while every other layer stays fp32; `drop` is
the float model's score minus that score. The table is sorted, most sensitive first: the
layers a mixed-precision recipe (KeepFloatConfig) should keep in fp32.

`score` is the family's task metric on the eager module (`family_score`: the Family's
`score_module(module, n)`, e.g. SI-SDRi of the speech extractor on n val mixtures), or any
user callable. Without one, `output_error_score` scores by the relative output error
against the float model on given inputs; `rank_by_output_error` is that ranking, which
KeepFloatConfig(top=K) uses at export (no data or metric needed there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from avedge.runtime.errors import AvedgeError
from torch import nn

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names (`named_modules()`) of the layers int8 quantizers act on."""
    return [name for name, m in model.named_modules() if isinstance(m, LAYER_TYPES) and name]


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8, one scale per output channel (dim 0)."""
    amax = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12)
    scale = (amax / 127).reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _fake_quant_activation(x: torch.Tensor) -> torch.Tensor:
    """Asymmetric int8 per tensor, range from this call (dynamic quantization)."""
    lo, hi = torch.aminmax(x.detach())
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = torch.clamp((hi - lo) / 255, min=1e-12)
    zero = torch.round(-lo / scale) - 128
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


@contextlib.contextmanager
def int8_fake_quant(model: nn.Module, layer: str):
    """Within the block, `layer` of `model` computes as dynamic int8 would; restored after."""
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, LAYER_TYPES):
        raise AvedgeError(f"{layer!r} is not a Linear/Conv layer of {type(model).__name__}; "
                          f"its layers: {', '.join(quantizable_layers(model)[:12])}")
    original = module.weight.data
    module.weight.data = _fake_quant_weight(original)
    hook = module.register_forward_pre_hook(
        lambda _m, args: (_fake_quant_activation(args[0]), *args[1:]))
    try:
        yield model
    finally:
        hook.remove()
        module.weight.data = original


@torch.no_grad()
def sensitivity(model: nn.Module, score: Callable[[nn.Module], float],
                layers: list[str] | None = None, progress: Callable | None = None) -> list[dict]:
    """-> [{"layer", "kind", "score", "drop"}], largest drop first. `model` is restored."""
    model.eval()
    layers = quantizable_layers(model) if layers is None else list(layers)
    if not layers:
        raise AvedgeError(f"{type(model).__name__} has no Linear/Conv1d/Conv2d layer to "
                          f"quantize one at a time")
    base = float(score(model))
    kinds = dict(model.named_modules())
    rows = []
    for i, name in enumerate(layers):
        with int8_fake_quant(model, name):
            s = float(score(model))
        rows.append({"layer": name, "kind": type(kinds[name]).__name__, "score": s,
                     "drop": base - s})
        if progress is not None:
            progress(i + 1, len(layers), name)
    rows.sort(key=lambda r: r["drop"], reverse=True)
    return rows


def output_error_score(reference: nn.Module, batches: list[tuple]) -> Callable[[nn.Module], float]:
    """score(model) = -(mean over batches of max |out - ref| / max |ref|) across outputs:
    0 for the float model, more negative the further quantization moves the outputs."""
    def outputs(model, batch):
        out = model(*batch)
        return [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if torch.is_tensor(o) and o.is_floating_point()]

    with torch.no_grad():
        refs = [outputs(reference, b) for b in batches]

    def score(model) -> float:
        errs = []
        for batch, ref in zip(batches, refs):
            got = outputs(model, batch)
            errs.append(max(float((g - r).abs().max() / r.abs().max().clamp(min=1e-12))
                            for g, r in zip(got, ref) if r.numel()))
        return -sum(errs) / len(errs)
    return score


def rank_by_output_error(model: nn.Module, batches: list[tuple],
                         layers: list[str] | None = None) -> list[dict]:
    """sensitivity() scored by the output error on `batches` (no metric, no data set)."""
    return sensitivity(model, output_error_score(model, batches), layers)


def family_score(family, n: int) -> Callable[[nn.Module], float]:
    """score(model) = the family's eager metric (`Family.score_module`) on n eval items."""
    if getattr(family, "score_module", None) is None:
        raise AvedgeError(f"model family {family.name!r} has no score_module (an eager-module "
                          f"metric); pass a score callable to sensitivity() instead")

    def score(model) -> float:
        result = family.score_module(model, n)
        if result.get("value") is None:
            raise AvedgeError(f"{family.name}: no metric to rank layers by "
                              f"({result.get('reason', 'score_module returned no value')})")
        return float(result["value"])
    return score
