"""Which operators get which precision on an Ethos-U, and a fake-quant model that
computes the NPU's int16 lookup tables the way the NPU does.

Schemes (the target's precision picks one; `ACTIVATIONS`):
  a8w8-log16  int8 everywhere except the ops that feed a `log` (and the log), at int16:
              a log exists to compress dynamic range, and an int8 input has none - on the
              speech extractor's log-power features int8 costs 4 dB of SI-SDRi, int16 there
              costs almost nothing and few cycles (benchmarks/RESULTS.md). The int8 default.
  a8w8        int8 everywhere.
  a16w8       int16 activations everywhere, int8 weights (about 2x the NPU cycles).
  a8w4        int8 activations, int4 weights (half the weight traffic).

Int16 tables: the Arm backend lowers an int16 log/exp/tanh/... to a TOSA TABLE of 513
entries sampled every 128 input codes and interpolated linearly between them (the
spec's int16 TABLE). PT2E's fake-quant evaluates the op exactly on each input code, so
where the function is steep inside one segment (a log near zero) the two disagree by
tens of percent. `emulate_int16_tables` swaps each such op in a converted fake-quant
graph for the table the backend will build, so the fake-quant model is the integer
graph again: accuracy measured on it is the NPU's, and the TOSA check can hold it to LSBs.
"""

from __future__ import annotations

import torch

ACTIVATIONS = {"int8": "a8w8-log16", "a8w8-log16": "a8w8-log16", "a8w8": "a8w8",
               "a16w8": "a16w8", "a8w4": "a8w4"}


def log_feed(graph) -> set:
    """The call_function nodes of an FX graph that compute a log's input (its ancestors
    up to the graph inputs and parameters) and the logs themselves."""
    logs = [n for n in graph.nodes if n.op == "call_function"
            and n.target in (torch.ops.aten.log.default, torch.log)]
    seen: set = set()
    stack = list(logs)
    while stack:
        n = stack.pop()
        if n in seen or n.op != "call_function":
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return seen


def ethos_u_quantizer(spec, scheme: str, qat: bool = False):
    """An EthosUQuantizer set up for `scheme` (see the module doc); `qat` for
    quantization-aware training (fake-quant observers that train through)."""
    from executorch.backends.arm.quantizer import (
        EthosUQuantizer,
        get_symmetric_a16w8_quantization_config,
        get_symmetric_quantization_config,
    )
    from executorch.backends.arm.quantizer.arm_quantizer import (
        get_symmetric_a8w4_quantization_config,
    )
    from executorch.backends.arm.quantizer.arm_quantizer_utils import NodeFinder

    class LogFeed(NodeFinder):
        def find_nodes(self, model):
            chosen = log_feed(model.graph)
            return iter([n for n in model.graph.nodes if n in chosen])

    configs = {"a8w8": get_symmetric_quantization_config,
               "a8w8-log16": get_symmetric_quantization_config,
               "a16w8": get_symmetric_a16w8_quantization_config,
               # a8w4's own default is QAT observers, which turn a zero state tensor's
               # (scale 0) calibration into NaN: calibrate it like the others.
               "a8w4": get_symmetric_a8w4_quantization_config}
    if scheme not in configs:
        raise ValueError(f"unknown Ethos-U precision scheme {scheme!r}; known: {sorted(configs)}")
    quantizer = EthosUQuantizer(spec)
    quantizer.set_global(configs[scheme](is_per_channel=True, is_qat=qat))
    # QatGraph (quantize/qat.py) trains an int16 op as this NPU computes it: a table.
    quantizer.qat_int16_op = Int16TableQat
    if scheme == "a8w8-log16":
        quantizer.set_node_finder(get_symmetric_a16w8_quantization_config(
            is_per_channel=True, is_qat=qat), LogFeed())
    return quantizer


# ----------------------------------------------------------------------------- tables

_TABLE_OPS = {torch.ops.aten.log.default: torch.log, torch.ops.aten.exp.default: torch.exp,
              torch.ops.aten.tanh.default: torch.tanh,
              torch.ops.aten.sigmoid.default: torch.sigmoid,
              torch.ops.aten.rsqrt.default: torch.rsqrt}
_DQ = "dequantize_per_tensor"
_Q = "quantize_per_tensor"


class Int16Table:
    """op on int16 codes as a TOSA int16 TABLE computes it: 513 entries, the op at codes
    -32768 + 128 j (j = 0..512; the last at 32768, one past int16), and for a code c the
    entry (c + 32768) >> 7 interpolated towards the next by ((c + 32768) & 127) / 128."""

    def __init__(self, op, in_q: tuple, out_q: tuple):
        self.op, self.in_q, self.out_q = op, in_q, out_q
        s_in, z_in, _, _ = in_q
        s_out, z_out, olo, ohi = out_q
        knots = torch.arange(-32768, 32769, 128, dtype=torch.float64)
        with torch.no_grad():
            vals = op((knots - z_in) * s_in)
        # Outside the op's domain (a log's negative codes) the entry is never interpolated
        # towards by an input the model produces; any finite code will do.
        table = torch.clamp(torch.round(vals / s_out) + z_out, olo, ohi)  # -inf -> olo
        self.table = torch.nan_to_num(table, nan=float(olo))
        self.__name__ = f"int16_table_{getattr(op, '__name__', 'op')}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s_in, z_in, lo, hi = self.in_q
        s_out, z_out, _, _ = self.out_q
        code = torch.clamp(torch.round(x.double() / s_in) + z_in, lo, hi) + 32768
        idx = torch.div(code, 128, rounding_mode="floor").long()
        frac = code - idx * 128
        table = self.table.to(x.device)
        base, nxt = table[idx], table[idx + 1]
        out_code = base + (nxt - base) * frac / 128
        return ((out_code - z_out) * s_out).to(x.dtype)


class Int16TableQat:
    """`Int16Table` for quantization-aware training: the op as the NPU's interpolated table
    computes it, differentiable, from the current scale of the input's fake-quant `fq_in`.
    QAT then trains against the features the NPU will really compute (a log table is far
    from the log in its first segments), not the exact function. Knots below the op's
    float floor take the op at the floor (the NPU's table: its output range's end).
    `ethos_u_quantizer` hands it to quantize/qat.py as the quantizer's `qat_int16_op`."""

    def __init__(self, op, fq_in, floor: float):
        self.op, self.fq_in, self.floor = op, fq_in, floor
        self.__name__ = f"int16_table_{op.__name__}"

    def __call__(self, x):
        s, z = self.fq_in.scale.to(x.dtype), self.fq_in.zero_point.to(x.dtype)
        u = (torch.clamp(x / s + z, -32768, 32767) + 32768) / 128
        idx = torch.floor(u).detach()
        frac = u - idx

        def entry(j):
            with torch.no_grad():
                return self.op(torch.clamp((-32768 + 128 * j - z) * s, min=self.floor))
        v0, v1 = entry(idx), entry(idx + 1)
        return v0 + (v1 - v0) * frac


def _is(node, op: str) -> bool:
    """node calls quantize_per_tensor (op=_Q) or dequantize_per_tensor (op=_DQ)."""
    name = str(getattr(node, "target", "")).split(".")
    return getattr(node, "op", None) == "call_function" and op in name


def _qparams(node) -> tuple | None:
    """(scale, zero point, qmin, qmax) of a per-tensor int16 q/dq node, else None."""
    if not (_is(node, _Q) or _is(node, _DQ)):
        return None
    args = list(node.args) + [None] * 6
    scale, zp, qmin, qmax, dtype = args[1:6]
    if dtype != torch.int16 or not isinstance(scale, float):
        return None
    return float(scale), int(zp), int(qmin), int(qmax)


def emulate_int16_tables(graph_module) -> list[str]:
    """Replace each int16 table op (dq(int16) -> op -> q(int16)) of a converted PT2E
    graph by its `Int16Table`, in place. -> the nodes replaced."""
    replaced = []
    for n in list(graph_module.graph.nodes):
        if n.op != "call_function" or n.target not in _TABLE_OPS:
            continue
        src = n.args[0]
        users = list(n.users)
        in_q = _qparams(src) if _is(src, _DQ) else None
        out_q = _qparams(users[0]) if len(users) == 1 and _is(users[0], _Q) else None
        if in_q is None or out_q is None:
            continue
        n.target = Int16Table(_TABLE_OPS[n.target], in_q, out_q)
        n.args = (src,)
        replaced.append(n.name)
    if replaced:
        graph_module.recompile()
    return replaced


def as_npu_computes(fake_quant):
    """A copy of a converted fake-quant graph with its int16 tables emulated."""
    import copy

    model = copy.deepcopy(fake_quant)
    emulate_int16_tables(model)
    return model
