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

`layer_table(root, graph, ...)` is the task-metric table `avedge sensitivity` prints and
writes (avedge/cli/sensitivity_cmd.py adds the family's provenance): the family's graph
that takes the user's recipe, each of its layers that recipe
quantizes (dynamic int8: Linear only, as the lowerings do; static: Linear and Conv, input
and output ranges fixed from the calibration set the lowering uses), scored with the
family's metric, with its provenance (family, weights sha256, a fingerprint of the graph's
weights, eval set, recipe). quantize/mixed_precision.py turns it into a recipe
(int8-keep-K@TABLE) and checks that provenance before the table is used.
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


def _fake_quant_activation(x: torch.Tensor, fixed: tuple | None = None) -> torch.Tensor:
    """Asymmetric int8 per tensor, range from this call (dynamic quantization), or the
    `fixed` (lo, hi) range calibration gave (static)."""
    lo, hi = torch.aminmax(x.detach()) if fixed is None else map(torch.tensor, fixed)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = torch.clamp((hi - lo) / 255, min=1e-12)
    zero = torch.round(-lo / scale) - 128
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


@contextlib.contextmanager
def int8_fake_quant(model: nn.Module, layer: str, ranges: dict | None = None):
    """Within the block, `layer` of `model` computes as dynamic int8 would (or static int8
    with `ranges` = {"input": (lo, hi), "output": (lo, hi)} from calibration); restored
    after."""
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, LAYER_TYPES):
        raise AvedgeError(f"{layer!r} is not a Linear/Conv layer of {type(model).__name__}; "
                          f"its layers: {', '.join(quantizable_layers(model)[:12])}")
    original = module.weight.data
    module.weight.data = _fake_quant_weight(original)
    fixed_in = ranges["input"] if ranges else None
    hooks = [module.register_forward_pre_hook(
        lambda _m, args: (_fake_quant_activation(args[0], fixed_in), *args[1:]))]
    if ranges:  # static int8 also quantizes the layer's output with a calibrated scale
        hooks.append(module.register_forward_hook(
            lambda _m, _args, out: _fake_quant_activation(out, ranges["output"])))
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        module.weight.data = original


@torch.no_grad()
def sensitivity(model: nn.Module, score: Callable[[nn.Module], float],
                layers: list[str] | None = None, progress: Callable | None = None, *,
                higher_is_better: bool = True, ranges: dict | None = None,
                base: float | None = None) -> list[dict]:
    """-> [{"layer", "kind", "params", "score", "drop"}], largest drop first (drop: how much
    worse than the float model, in the metric's unit, whichever way it points). `ranges`:
    layer -> static int8 ranges (activation_ranges); `base`: the float score if known.
    `model` is restored."""
    model.eval()
    layers = quantizable_layers(model) if layers is None else list(layers)
    if not layers:
        raise AvedgeError(f"{type(model).__name__} has no Linear/Conv1d/Conv2d layer to "
                          f"quantize one at a time")
    base = float(score(model)) if base is None else base
    kinds = dict(model.named_modules())
    rows = []
    for i, name in enumerate(layers):
        with int8_fake_quant(model, name, None if ranges is None else ranges[name]):
            s = float(score(model))
        rows.append({"layer": name, "kind": type(kinds[name]).__name__,
                     "params": sum(p.numel() for p in kinds[name].parameters()), "score": s,
                     "drop": base - s if higher_is_better else s - base})
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


def family_score(family, n: int, keep: bool = False):
    """score(model) = the family's eager metric (`Family.score_module`) on n eval items.
    keep=True: -> (score, the list each full result dict is appended to)."""
    if getattr(family, "score_module", None) is None:
        raise AvedgeError(f"model family {family.name!r} has no score_module (an eager-module "
                          f"metric); pass a score callable to sensitivity() instead")
    results: list[dict] = []

    def score(model) -> float:
        result = family.score_module(model, n)
        if result.get("value") is None:
            raise AvedgeError(f"{family.name}: no metric to rank layers by "
                              f"({result.get('reason', 'score_module returned no value')})")
        results.append(result)
        return float(result["value"])
    return (score, results) if keep else score


# ---- the task-metric table (`avedge sensitivity`) ----------------------------------------

TABLE_FORMAT = "avedge-sensitivity/1"
# The layers each recipe quantizes: XNNPACK's dynamic quantizer annotates linear layers
# only (Int8DynamicConfig's doc), static int8 reaches convs too.
RECIPE_LAYERS = {"int8": (nn.Linear,), "int8-static": LAYER_TYPES}


def fingerprint(module: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of the module's state: which
    weights a table was measured on, checked again against the graph being exported."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@torch.no_grad()
def graph_layers(module: nn.Module, example_inputs: tuple, types=LAYER_TYPES) -> list[str]:
    """The layers of `types` the module's forward runs on its example inputs (a submodule
    exported as another graph, e.g. the extractor's run-once speaker encoder, is not)."""
    called: list[str] = []
    hooks = [m.register_forward_hook(lambda _m, _a, _o, n=name: called.append(n))
             for name, m in module.named_modules() if name and isinstance(m, types)]
    try:
        module.eval()(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(called))


@torch.no_grad()
def activation_ranges(module: nn.Module, batches: list[tuple], layers: list[str]) -> dict:
    """layer -> {"input": (lo, hi), "output": (lo, hi)} over the calibration batches: the
    min/max observers static int8 fixes its scales from."""
    seen: dict[str, dict] = {}

    def widen(name, key, t):
        lo, hi = (float(v) for v in torch.aminmax(t.detach()))
        old = seen.setdefault(name, {}).get(key, (lo, hi))
        seen[name][key] = (min(lo, old[0]), max(hi, old[1]))

    def observe(name, args, out) -> None:  # returns None: the output is left as it is
        widen(name, "input", args[0])
        widen(name, "output", out)

    mods = dict(module.named_modules())
    hooks = [mods[n].register_forward_hook(lambda _m, args, out, n=n: observe(n, args, out))
             for n in layers]
    try:
        for b in batches:
            module(*b)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in layers if n not in seen]
    if missing:
        raise AvedgeError(f"calibration never ran {', '.join(missing[:4])}: no static ranges")
    return seen


def root_of(graph: nn.Module, graphs: list[nn.Module]) -> nn.Module:
    """What a family's score_module scores: the module the family built. Its export plan
    hands out that module or parts of it: the graph the recipe reaches, or one holding it."""
    for g in graphs:
        if g is not graph and any(m is graph for m in g.modules()):
            return g
    return graph


def layer_table(root: nn.Module, graph: nn.Module, example_inputs: tuple, recipe: str,
                score: Callable[[nn.Module], float], higher_is_better: bool = True,
                progress: Callable | None = None) -> dict:
    """The sensitivity of each layer `recipe` quantizes in `graph` (part of, or equal to,
    `root`, the module `score` scores). -> {"recipe", "module_sha256", "float",
    "fake_quant", "calibration"?, "layers": rows named as in `graph`}."""
    if recipe not in RECIPE_LAYERS:
        raise AvedgeError(f"sensitivity recipe {recipe!r} is not one of "
                          f"{', '.join(RECIPE_LAYERS)} (the int8 schemes a layer can be "
                          f"quantized alone in)")
    root_name = {id(m): name for name, m in root.named_modules()}
    layers = graph_layers(graph, example_inputs, RECIPE_LAYERS[recipe])
    if not layers:
        raise AvedgeError(f"{type(graph).__name__} runs no layer {recipe} quantizes")
    mods = dict(graph.named_modules())
    ranges, calibration = None, None
    if recipe == "int8-static":
        from avedge.quantize.calibration import calibration_set
        from avedge.quantize.configs import Int8StaticConfig

        # the batches the static lowering calibrates this graph on
        batches, calibration = calibration_set(graph, example_inputs,
                                               Int8StaticConfig().calibration_batches)
        ranges = {root_name[id(mods[k])]: v
                  for k, v in activation_ranges(graph, batches, layers).items()}
    root.eval()
    base = float(score(root))
    rows = sensitivity(root, score, [root_name[id(mods[k])] for k in layers], progress,
                       higher_is_better=higher_is_better, ranges=ranges, base=base)
    back = {root_name[id(mods[k])]: k for k in layers}
    for r in rows:
        r["layer"] = back[r["layer"]]
    return {"recipe": recipe, "module_sha256": fingerprint(graph), "float": base,
            "fake_quant": ("int8 weights per output channel (symmetric) and the layer's input "
                           + ("per call (dynamic)" if ranges is None else
                              "and output at ranges fixed by calibration (static)")
                           + ", one layer at a time, the rest float, eager module"),
            **({"calibration": calibration} if calibration else {}),
            "layers": rows}
