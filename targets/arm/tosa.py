"""Functional check without hardware: the lowered program, with every NPU delegate run
by the TOSA reference model, against the PT2E fake-quant PyTorch model.

The host cannot execute an Ethos-U `.pte`, but the TOSA graph that Vela compiled is
the delegate's exact integer semantics, and `tosa_reference_model` (tosa-tools)
executes it bit-exactly. The rest of the lowered program (the int8 <-> float
conversions at its edges, and any operator that fell back to the CPU) runs as edge
ops in PyTorch. The result is compared with the fake-quant model (the quantized model
as PyTorch simulates it) in units of each output's quantization step (LSB): rounding
of the integer rescales may differ by one step; more means the lowering is wrong.
"""

from __future__ import annotations

import numpy as np
import torch
from avedge.runtime.native_log import captured_stdout

LSB_LIMIT = 1.0  # the contract: within one quantization step
# Each integer rescale may round one step differently from PyTorch's fake-quant; in a
# deep graph those steps compound (measured: <= 1 LSB for 2 blocks, 4 LSB for the
# 12-block speech extractor, on a few elements). A wrong op or scale is off by far
# more, on most elements: export refuses above this.
REFUSE_LSB = 16.0
REFUSE_RMS = 0.05  # 5 % relative RMS difference on an output (a ~26 dB error floor)
REFERENCE = "tosa_reference_model (tosa-tools) vs PT2E fake-quant PyTorch"


def _run_tosa(tosa_bytes: bytes, inputs: list[torch.Tensor], like: list) -> list[torch.Tensor]:
    import tosa_reference_model as ref

    arrays = [np.ascontiguousarray(t.detach().numpy()) for t in inputs]
    # The reference model prints (C++ stdout) that the flatbuffer's TOSA 1.0 is older
    # than its serializer (backward compatible): noise, kept out of the export's output.
    with captured_stdout():
        outputs, status = ref.run(tosa_bytes, arrays,
                                  initialize_variable_tensor_from_numpy=True)
    if status != ref.GraphStatus.TOSA_VALID:
        raise UnpredictableGraph(str(status).rsplit(".", 1)[-1])
    result = []
    for out, val in zip(outputs, like):
        arr = np.asarray(out)
        # The reference model returns arrays in the delegate's memory order; the
        # delegates here keep contiguous (NC.. / row-major) order, so a reshape suffices.
        result.append(torch.from_numpy(arr.reshape(tuple(val.shape)).astype(
            _numpy_dtype(val.dtype))))
    return result


class UnpredictableGraph(RuntimeError):
    """The reference model's verdict on the graph itself (e.g. TOSA_UNPREDICTABLE: an
    int16 rescale or table whose result the TOSA spec leaves to the implementation)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status  # fx's Interpreter rewrites args[0]; this stays as it was


def _numpy_dtype(dtype: torch.dtype):
    return torch.empty((), dtype=dtype).numpy().dtype


def run_with_tosa(edge_program, tosa_by_delegate: list, inputs: tuple) -> list[torch.Tensor]:
    """Run the lowered edge program with each delegate executed by the TOSA ref model."""
    from torch.fx import Interpreter

    gm = edge_program.module()
    by_id = {}

    class WithTosa(Interpreter):
        def call_function(self, target, args, kwargs):
            if getattr(target, "__name__", "") == "executorch_call_delegate":
                lowered, *operands = args
                if id(lowered) not in by_id:
                    raise RuntimeError("a delegate without its TOSA graph")
                out_node = next(n for n in lowered.original_module.graph.nodes
                                if n.op == "output")
                like = [a.meta["val"] for a in out_node.args[0]]
                return tuple(_run_tosa(by_id[id(lowered)], list(operands), like))
            return super().call_function(target, args, kwargs)

    # `module()` copies submodules; map the copies back to the delegates we hold (two
    # delegates with equal bytes compiled from equal TOSA graphs, so either matches).
    for d, tosa in tosa_by_delegate:
        for mod in gm.children():
            if getattr(mod, "processed_bytes", None) == d.processed_bytes:
                by_id[id(mod)] = tosa
    out = WithTosa(gm).run(*inputs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _output_scales(edge_program) -> list[tuple[float, int] | None]:
    """(quantization step, number of levels) of each program output (its final
    dequantize), else None."""
    out_node = next(n for n in edge_program.graph.nodes if n.op == "output")
    scales = []
    for arg in out_node.args[0]:
        name = str(getattr(arg, "target", ""))
        if "dequantize_per_tensor" not in name:
            scales.append(None)
            continue
        qmin, qmax = (int(a) for a in arg.args[3:5])
        scales.append((float(arg.args[1]), qmax - qmin + 1))
    return scales


def tosa_check(edge_program, tosa_by_delegate: list, fake_quant, batches: list) -> dict:
    """Max output difference, in LSBs, over `batches` (real inputs: calibration data)."""
    scales = _output_scales(edge_program)
    worst_lsb, worst_lsb8, worst_abs, mismatched, total = 0.0, 0.0, 0.0, 0, 0
    per_output = [0.0] * len(scales)
    err2, ref2 = [0.0] * len(scales), [0.0] * len(scales)  # for the relative RMS error
    for batch in batches:
        try:
            got = run_with_tosa(edge_program, tosa_by_delegate, batch)
        except UnpredictableGraph as exc:
            return {"reference": REFERENCE, "batches": len(batches), "status": exc.status,
                    "max_lsb_diff": None, "lsb_limit": LSB_LIMIT, "ok": False, "gross": True}
        with torch.no_grad():
            want = fake_quant(*batch)
        want = list(want) if isinstance(want, (tuple, list)) else [want]
        for i, (g, w) in enumerate(zip(got, want)):
            diff = float((g.double() - w.double()).abs().max()) if w.numel() else 0.0
            err2[i] += float(((g.double() - w.double()) ** 2).sum())
            ref2[i] += float((w.double() ** 2).sum())
            worst_abs = max(worst_abs, diff)
            if scales[i]:
                step, levels = scales[i]
                lsb = diff / step
                per_output[i] = max(per_output[i], lsb)
                worst_lsb = max(worst_lsb, lsb)
                worst_lsb8 = max(worst_lsb8, lsb * 256 / levels)
                mismatched += int(((g.double() - w.double()).abs() > 0.5 * step).sum())
                total += w.numel()
    return {
        "reference": REFERENCE,
        "status": "TOSA_VALID",
        "batches": len(batches),
        "max_lsb_diff": round(worst_lsb, 4),
        "max_lsb_diff_per_output": [round(x, 4) for x in per_output],
        "max_abs_diff": worst_abs,
        "elements_off_by_a_step": mismatched,
        "elements": total,
        # The same difference in steps of an 8-bit code over the output's range: int16
        # outputs differ by tens of their own (256x finer) steps without the lowering
        # being wrong (each int16 table's 7-bit interpolation rounds on its own).
        "max_lsb8_diff": round(worst_lsb8, 4),
        "relative_rms_diff": [round((e / r) ** 0.5, 6) if r else 0.0
                              for e, r in zip(err2, ref2)],
        "lsb_limit": LSB_LIMIT,
        # Outputs compare as float32 values: one step of a large-valued output measures
        # 1.00002 steps. A lowering differs by whole steps, so a milli-step is noise.
        "ok": worst_lsb <= LSB_LIMIT + 1e-3,
        # A wrong op or scale is off on most elements, by a lot: over REFUSE_LSB 8-bit
        # steps somewhere *and* a relative RMS difference over REFUSE_RMS on an output.
        # Rounding and table interpolation are off by a few steps on a few elements.
        "gross": worst_lsb8 > REFUSE_LSB and any(
            r and (e / r) ** 0.5 > REFUSE_RMS for e, r in zip(err2, ref2)),
    }
