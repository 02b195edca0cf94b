"""Quantization-aware training through PT2E: train a model with the fake-quant ops of
a backend's quantizer in its graph, so the weights learn to live with the integer
grid they will be lowered to, then hand the trained weights back to the float module.

    qat = QatGraph(module, example_inputs, quantizer)   # quantizer built with is_qat;
                                                         # example_inputs: a real batch
    opt = torch.optim.AdamW(qat.trainable(), lr=1e-4)
    ... loss(qat(*batch)).backward(); opt.step() ...
    qat.write_back()                                     # module now has the weights

The float module is then exported again through the target's normal (post-training)
lowering: a per-chunk graph other than the one trained on is fine as long as it has
the same ops on the same signals (e.g. `RingExtractor.utterance` vs `forward`).
"""

from __future__ import annotations

import torch
from avedge.runtime.errors import AvedgeError


class QatGraph(torch.nn.Module):
    """`module` exported and prepared for QAT; its parameters map back to `module`'s
    (those with requires_grad: freeze what the graph does not use)."""

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, quantizer):
        super().__init__()
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

        graph = torch.export.export(module, tuple(example_inputs)).module(check_guards=False)
        self.graph = prepare_qat_pt2e(graph, quantizer)
        _static_reshapes(self.graph)
        _constants_as_parameters(self.graph, module)
        _finite_singular_ops(self.graph, tuple(example_inputs),
                             getattr(quantizer, "qat_int16_op", None))
        object.__setattr__(self, "_module", module)
        self.sources = _match_parameters(self.graph, module)
        for name, p in self.graph.named_parameters():  # constants the passes lifted stay fixed
            p.requires_grad_(name in self.sources)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.graph.parameters() if p.requires_grad]

    def forward(self, *args):
        return self.graph(*args)

    def observe(self, on: bool) -> None:
        """Let the fake-quant observers update their ranges (training) or not (eval)."""
        for m in self.graph.modules():
            if hasattr(m, "enable_observer"):
                m.enable_observer(on)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained parameters into the float module they came from."""
        own = dict(self.graph.named_parameters())
        src = dict(self._module.named_parameters())
        for graph_name, (module_name, row) in self.sources.items():
            dst = src[module_name] if row is None else src[module_name][row]
            dst.copy_(own[graph_name])


def _match_parameters(graph, module) -> dict[str, tuple[str, int | None]]:
    """graph parameter name -> (module parameter name, row or None). The backend's
    annotation passes re-trace the graph and lose the names, not the values, and fold
    an indexed parameter (`w[j]`) into a constant of its own: match on values (the
    whole tensor or one row), and refuse if a trainable tensor is ambiguous or missing."""
    candidates: dict = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        views = [(None, p)] + ([(i, p[i]) for i in range(p.shape[0])] if p.dim() >= 2 else [])
        for row, v in views:
            candidates.setdefault((tuple(v.shape), _digest(v)), []).append((name, row, v))
    sources: dict = {}
    for gname, gp in graph.named_parameters():
        matches = [(n, r) for n, r, v in candidates.get((tuple(gp.shape), _digest(gp)), [])
                   if torch.equal(v, gp)]
        if len(matches) > 1:
            raise AvedgeError(f"QAT graph parameter {gname} matches several module "
                              f"parameters ({matches}); cannot map the trained weights back")
        if matches:
            sources[gname] = matches[0]
    covered = {n for n, r in sources.values() if r is None}
    rows: dict = {}
    for n, r in sources.values():
        if r is not None:
            rows.setdefault(n, set()).add(r)
    params = dict(module.named_parameters())
    covered |= {n for n, rs in rows.items() if len(rs) == params[n].shape[0]}
    missing = {n for n, p in params.items() if p.requires_grad} - covered
    if missing:
        raise AvedgeError(f"the backend's quantizer rewrote these parameters, so QAT would not "
                          f"train them: {sorted(missing)[:8]}")
    return sources


_SINGULAR = {torch.ops.aten.log.default: torch.log, torch.ops.aten.rsqrt.default: torch.rsqrt}


class _Floored:
    """op(max(x, floor)). A fake-quantized input can round to 0 where the op is singular
    (log, rsqrt: a LayerNorm's variance) and the inf turns the next observer's range into
    NaN. The NPU's integer table maps code 0 to its end entry; the smallest input the op
    takes in float (measured on the example batch) is a finite stand-in for it."""

    def __init__(self, op, floor: float):
        self.op, self.floor = op, floor
        self.__name__ = f"floored_{op.__name__}"

    def __call__(self, x):
        return self.op(torch.clamp(x, min=self.floor))


class _Recorder:
    def __init__(self, op, seen: list):
        self.op, self.seen = op, seen
        self.__name__ = op.__name__

    def __call__(self, x):
        self.seen.append(float(x.detach().min()))
        return self.op(x)


def _finite_singular_ops(graph_module, example_inputs: tuple, int16_op=None) -> None:
    """Make the singular ops finite on the integer grid. `int16_op(op, fake_quant, floor)`,
    when the backend's quantizer has one (`qat_int16_op`), is how the backend computes an
    op on int16 codes when that is not the op itself (the Ethos-U's interpolated tables,
    targets/arm/precision.py): QAT then trains against what the device computes."""
    nodes = [n for n in graph_module.graph.nodes
             if n.op == "call_function" and n.target in _SINGULAR]
    if not nodes:
        return
    seen: dict = {n.name: [] for n in nodes}
    ops = {n.name: _SINGULAR[n.target] for n in nodes}
    for n in nodes:
        n.target = _Recorder(ops[n.name], seen[n.name])
    graph_module.recompile()
    quantizers = [m for m in graph_module.modules() if hasattr(m, "disable_fake_quant")]
    for m in quantizers:  # run in float: what the op sees without the integer grid
        m.disable_fake_quant()
        m.disable_observer()
    try:
        with torch.no_grad():
            graph_module(*example_inputs)
    finally:
        for m in quantizers:
            m.enable_fake_quant()
            m.enable_observer()
    for n in nodes:
        floor = min(seen[n.name]) / 16  # margin for inputs quieter than the example's
        if not floor > 0:
            raise AvedgeError(f"{ops[n.name].__name__} at {n.name} sees {floor} in float on the "
                              f"example inputs: it is not finite there, QAT cannot train it")
        fq_in = _input_fake_quant(graph_module, n)
        if int16_op is not None and fq_in is not None and int(fq_in.quant_max) > 127:
            n.target = int16_op(ops[n.name], fq_in, floor)
        else:
            n.target = _Floored(ops[n.name], floor)
    graph_module.recompile()


def _input_fake_quant(graph_module, node):
    """The fake-quant module on a node's input, or None."""
    src = node.args[0]
    if getattr(src, "op", None) != "call_module":
        return None
    m = graph_module.get_submodule(src.target)
    return m if hasattr(m, "quant_max") else None


def _constants_as_parameters(graph, module) -> None:
    """Constant folding turns an indexed parameter (`w[j]`) into a plain buffer of the
    graph; make each buffer that equals a trainable parameter or a row of one a
    parameter again, so that it trains (and `_match_parameters` maps it back)."""
    keys = set()
    for _, p in module.named_parameters():
        if p.requires_grad:
            keys.add((tuple(p.shape), _digest(p)))
            if p.dim() >= 2:
                keys.update((tuple(p[i].shape), _digest(p[i])) for i in range(p.shape[0]))
    for name, buf in list(graph.named_buffers()):
        if not buf.is_floating_point() or (tuple(buf.shape), _digest(buf)) not in keys:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = graph.get_submodule(owner_name) if owner_name else graph
        del owner._buffers[attr]
        owner.register_parameter(attr, torch.nn.Parameter(buf.detach().clone()))


def _digest(t: torch.Tensor) -> float:
    t = t.detach().double().flatten()
    return float((t * torch.arange(1, t.numel() + 1, dtype=torch.float64).cos()).sum())


def _static_reshapes(graph_module) -> None:
    """The Arm annotation passes re-trace with symbolic sizes and leave reshape targets
    that name a free symbol (e.g. the frame count); the QAT graph only runs at the traced
    shape, so such a size is the one left to infer (-1)."""
    changed = False
    for n in graph_module.graph.nodes:
        if n.op != "call_function" or n.target not in (torch.ops.aten.reshape.default,
                                                         torch.ops.aten.view.default):
            continue
        shape = list(n.args[1])
        symbolic = [i for i, v in enumerate(shape) if not isinstance(v, int)]
        if len(symbolic) > 1:
            raise AvedgeError(f"reshape {n.name} has {len(symbolic)} symbolic sizes; "
                              f"QAT needs a static graph")
        if symbolic:
            shape[symbolic[0]] = -1
            n.args = (n.args[0], shape, *n.args[2:])
            changed = True
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
