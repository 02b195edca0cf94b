"""Lower to Arm microcontrollers through ExecuTorch's Arm backend.

Ethos-U (format "pte-ethos-u"):
    torch.export -> [NPU-friendly rewrites] -> PT2E with EthosUQuantizer, calibrated
    -> to_edge_transform_and_lower(EthosUPartitioner) -> .pte
    The partitioner hands each supported subgraph to TOSA and then to Vela. The
    artifact keeps the TOSA graph and Vela's summary + per-layer CSVs (re-run per
    delegate, since the backend's delegates overwrite each other's CSVs); the manifest
    gets `npu_estimate` (cycles, ms at the clock, SRAM/flash KiB, NPU op share, the
    ops left on the CPU) and `tosa_check` (the TOSA graph in the TOSA reference model
    against the fake-quant PyTorch model, in output LSBs).

Cortex-M55 (format "pte-cortex-m"):
    PT2E with CortexMQuantizer -> edge -> CortexMPassManager (CMSIS-NN ops). No NPU,
    no Vela; the manifest gets `cortex_m` (ops mapped to CMSIS-NN vs left portable).

Neither .pte runs on this host (it needs a cross-built runtime on an FVP or board).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import torch
from avedge.quantize import Int8StaticConfig
from avedge.quantize.calibration import calibration_inputs
from avedge.runtime.errors import AvedgeError
from avedge.targets.arm.precision import ACTIVATIONS
from avedge.targets.lowering import Lowered, LoweringJob

# Edge ops that are plumbing, not model operators: never counted in the op split.
_PLUMBING = ("getitem", "executorch_call_delegate")
_QDQ = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel",
        "dequantize_per_channel")
_LAYOUT = ("unsqueeze_copy", "squeeze_copy", "select_copy", "view_copy", "permute_copy",
           "clone_dim_order", "to_dim_order_copy", "alloc")


class NpuUnsupportedError(AvedgeError):
    """A model with no operator the NPU can run (nothing would be accelerated)."""


def arm_toolchain_missing() -> str | None:
    """None if the Ethos-U toolchain (ExecuTorch Arm backend, Vela, TOSA tools) imports."""
    import importlib.util

    for mod, pkg in (("executorch.backends.arm", "executorch"),
                     ("ethosu.vela", "ethos-u-vela"),
                     ("tosa_reference_model", "tosa-tools")):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return (f"{mod} is not importable ({pkg} missing); install the Arm toolchain "
                    f"with pip install 'avedge[ethos-u]'")
    return None


def _require_int8_recipe(job: LoweringJob) -> Int8StaticConfig:
    missing = arm_toolchain_missing()
    if missing:
        raise AvedgeError(f"target {job.target.name!r} needs the Arm toolchain: {missing}")
    cfg = job.recipe.find(Int8StaticConfig)
    if cfg is None:
        raise AvedgeError(
            f"target {job.target.name!r} runs integer arithmetic only: recipe "
            f"{job.recipe.name!r} is not accepted; use int8-static (calibrated int8, the "
            f"target's default)")
    return cfg


def _calibrate(graph, quantizer, module, example_inputs, cfg) -> tuple[object, list]:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = calibration_inputs(module, example_inputs, cfg.calibration_batches)
    prepared = prepare_pt2e(graph, quantizer)
    for batch in batches:
        prepared(*batch)
    return convert_pt2e(prepared), batches


def _compute_nodes(graph) -> list:
    """Model operators of an edge graph (no placeholders, plumbing, or q/dq)."""
    out = []
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        name = str(getattr(n.target, "__name__", n.target))
        if any(p in name for p in _PLUMBING + _QDQ):
            continue
        out.append(n)
    return out


def _op_name(node) -> str:
    name = str(getattr(node.target, "__name__", node.target))
    return name.replace("aten.", "aten::", 1) if name.startswith("aten.") else name


def _where(node) -> str:
    """The module path a node came from (for error messages), e.g. 'blocks.3.fc1'."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "(top level)"
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "") or "(top level)"


@contextlib.contextmanager
def _rejections(into: dict):
    """Record the partitioner's reason for each node it rejects (node name -> reason).

    The Arm partitioner only logs these as a table; wrapping its reporter class for
    the duration of one lowering keeps them structured. Without it the op names are
    still reported (from the graph); only the reasons are lost.
    """
    from executorch.backends.arm.tosa import partitioner as tp

    base = tp.WhyNoPartitionReporter

    class Recording(base):
        def report_reject(self, node, reason):
            into.setdefault(node.name, str(reason))
            super().report_reject(node, reason)

    tp.WhyNoPartitionReporter = Recording
    try:
        yield
    finally:
        tp.WhyNoPartitionReporter = base


def _ops_on_cpu(edge_graph, reasons: dict) -> list[dict]:
    """Non-delegated operators grouped by op, with where they come from and why."""
    groups: dict[str, dict] = {}
    for n in _compute_nodes(edge_graph):
        g = groups.setdefault(_op_name(n), {"op": _op_name(n), "count": 0, "where": [],
                                            "reason": None})
        g["count"] += 1
        if _where(n) not in g["where"]:
            g["where"].append(_where(n))
        g["reason"] = g["reason"] or reasons.get(n.name)
    return list(groups.values())


def _delegates(edge_gm):
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    return [m for _, m in edge_gm.named_children() if isinstance(m, LoweredBackendModule)]


def ethos_u_spec(target, intermediates: Path | None = None):
    """The EthosUCompileSpec of a board line: its NPU, Vela system config and memory mode."""
    from avedge.targets.arm.boards import VELA_SYSTEMS

    if target.name not in VELA_SYSTEMS:
        raise AvedgeError(f"target {target.name!r} names no Vela system; Ethos-U boards are "
                          f"made with targets.arm.ethos_u_board (known: "
                          f"{', '.join(sorted(VELA_SYSTEMS))})")
    from executorch.backends.arm.ethosu import EthosUCompileSpec

    system = VELA_SYSTEMS[target.name]
    spec = EthosUCompileSpec(target.npu, system_config=system.system_config,
                             memory_mode=system.memory_mode, config_ini=str(system.config_ini))
    if intermediates is not None:
        spec.dump_intermediate_artifacts_to(str(intermediates))
    return spec


def quantize_for_ethos_u(module, example: tuple, target, cfg: Int8StaticConfig,
                         spec=None, activations: str | None = None):
    """NPU rewrites + PT2E calibration with the Ethos-U quantizer.

    -> (fake-quant GraphModule, calibration batches, rewrites applied, activation scheme).
    The GraphModule is what gets lowered; `precision.as_npu_computes(it)` is the
    model as the NPU computes it (its int16 tables interpolated), simulated in float: what
    the TOSA check compares against and what accuracy (e.g. SI-SDRi) is measured on.
    """
    from avedge.targets.arm.precision import ethos_u_quantizer
    from avedge.targets.arm.rewrites import for_npu

    activations = activations or ACTIVATIONS.get(target.precision)
    if activations not in ACTIVATIONS.values():
        raise AvedgeError(f"target {target.name!r} has precision {target.precision!r}; the "
                          f"Ethos-U lowering accepts {', '.join(sorted(set(ACTIVATIONS)))}")
    spec = spec or ethos_u_spec(target)
    rewritten, rewrites = for_npu(module, example)
    quantizer = ethos_u_quantizer(spec, activations)
    graph = torch.export.export(rewritten, example).module(check_guards=False)
    quantized, batches = _calibrate(graph, quantizer, module, example, cfg)
    return quantized, batches, rewrites, activations


def lower_ethos_u(job: LoweringJob) -> Lowered:
    from avedge.runtime.native_log import captured_stdout
    from avedge.targets.arm.precision import as_npu_computes
    from avedge.targets.arm.tosa import REFUSE_LSB, REFUSE_RMS, tosa_check
    from avedge.targets.arm.vela import (
        combine,
        delegate_figures,
        keep_files,
        read_per_layer,
        read_summary,
        run_vela,
    )
    from executorch.backends.arm.ethosu import EthosUPartitioner
    from executorch.backends.arm.tosa.backend import arm_get_first_delegation_tag
    from executorch.exir import to_edge_transform_and_lower

    cfg = _require_int8_recipe(job)
    target = job.target
    example = tuple(job.example_inputs)
    with tempfile.TemporaryDirectory(prefix="avedge-vela-") as scratch:
        work = Path(scratch)
        spec = ethos_u_spec(target, work / "lowering")
        quantized, batches, rewrites, activations = quantize_for_ethos_u(
            job.module, example, target, cfg, spec)
        program = torch.export.export(quantized, example)
        partitioner = EthosUPartitioner(spec)
        partitioner.intermediate_path = None  # else it adds a log file handler per call
        reasons: dict[str, str] = {}
        # Vela prints its network summary on stdout; the figures come from its CSVs.
        failure = None
        with _rejections(reasons), _quiet_arm_logs(), captured_stdout() as vela_log:
            try:
                edge = to_edge_transform_and_lower(program, partitioner=[partitioner])
            except Exception as exc:  # noqa: BLE001 - re-raised below, with Vela's output
                failure = exc
        if failure is not None:
            sys.stderr.write(vela_log[0][-4000:])
            raise failure
        edge_gm = edge.exported_program().graph_module
        delegates = _delegates(edge_gm)
        on_cpu = _ops_on_cpu(edge_gm.graph, reasons)
        if not delegates:
            raise NpuUnsupportedError(
                f"no operator of this model can run on {target.npu}: "
                + "; ".join(f"{o['op']} x{o['count']} at {', '.join(o['where'][:3])}"
                            + (f" ({o['reason']})" if o["reason"] else "") for o in on_cpu)
                + "; nothing would be accelerated. Use target 'cortex-m55' or 'hearable'")
        npu_ops = sum(len(_compute_nodes(d.original_module.graph)) for d in delegates)
        (job.out_dir / "model.pte").write_bytes(edge.to_executorch().buffer)
        files = {"model.pte": "pte-ethos-u"}
        figures, tosa_files = [], []
        spec_name = str(spec.tosa_spec)
        for i, d in enumerate(delegates):
            tag = arm_get_first_delegation_tag(d.original_module.graph_module)
            tosa = work / "lowering" / f"output_{tag}_{spec_name}.tosa"
            # Vela's flags as the backend used them, plus the per-layer report.
            flags = ["--verbose-performance", *spec.compiler_flags]
            summary, per_layer = run_vela(tosa, flags, work / f"vela{i}")
            figures.append({"tag": tag, **delegate_figures(read_summary(summary),
                                                           read_per_layer(per_layer))})
            kept = keep_files(job.out_dir, i, len(delegates), tosa, summary, per_layer)
            files.update(kept)
            figures[-1]["files"] = sorted(kept)
            tosa_files.append((d, tosa.read_bytes()))
        estimate = combine(figures, target.clock_mhz,
                           {"npu": npu_ops, "cpu": sum(o["count"] for o in on_cpu),
                            "ops_on_cpu": on_cpu})
    estimate["rewrites"] = rewrites
    if on_cpu:
        warnings.warn(_fallback_message(target, on_cpu), stacklevel=2)
    check = tosa_check(edge.exported_program(), tosa_files, as_npu_computes(quantized),
                       batches[:4])
    if check["status"] != "TOSA_VALID":
        raise AvedgeError(
            f"the TOSA reference model rejects the lowered graph as {check['status']} "
            f"(an integer op whose result the TOSA spec leaves undefined, as int16 "
            f"activations can give); the NPU's output would not be reproducible. Use "
            f"int8 activations (precision 'int8')")
    if check["gross"]:
        # Like fp32 parity: the integer graph the NPU would run is not the model that
        # was quantized; shipping it would give wrong audio with no error on the device.
        raise AvedgeError(
            f"the lowered TOSA graph disagrees with the fake-quant model by "
            f"{check['max_lsb8_diff']} steps of an 8-bit code (over {REFUSE_LSB:g}; "
            f"{check['max_lsb_diff']} of the output's own LSB, contract "
            f"{check['lsb_limit']:g}), relative RMS difference per output "
            f"{check['relative_rms_diff']} (over {REFUSE_RMS:g}), on {check['batches']} "
            f"calibration inputs: the Arm lowering got an op wrong")
    if not check["ok"]:
        warnings.warn(f"the TOSA graph differs from the fake-quant model by up to "
                      f"{check['max_lsb_diff']} LSB on {check['elements_off_by_a_step']} of "
                      f"{check['elements']} output elements ({check['max_lsb8_diff']} "
                      f"steps of an 8-bit code; rescale rounding compounding through the "
                      f"graph's depth, int16 table interpolation; contract "
                      f"{check['lsb_limit']:g} LSB)",
                      stacklevel=2)
    report = {"int8_compute_ops": npu_ops, "float_compute_ops": 0,
              "activations": activations, "cpu_ops": estimate["cpu_ops"]}
    return Lowered(files, report, {"npu_estimate": estimate, "tosa_check": check})


def _fallback_message(target, on_cpu: list[dict]) -> str:
    ops = "; ".join(f"{o['op']} x{o['count']} at {', '.join(o['where'][:3])}"
                    + (f" ({o['reason']})" if o["reason"] else "") for o in on_cpu)
    return (f"{target.npu} cannot take these operators: {ops}. They fall back to the "
            f"Cortex-M CPU (ExecuTorch portable kernels), which Vela's estimate does not "
            f"include; rewrite them (see targets/arm/rewrites.py) to keep the model on the NPU")


@contextlib.contextmanager
def _quiet_arm_logs():
    """The Arm passes log at WARNING for every decomposition; keep export output short."""
    log = logging.getLogger("executorch.backends.arm")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def lower_cortex_m(job: LoweringJob) -> Lowered:
    """CMSIS-NN on a Cortex-M55: quantize with CortexMQuantizer, rewrite to cortex_m ops."""
    from executorch.backends.cortex_m.edge_compile_config import cortex_m_edge_compile_config
    from executorch.backends.cortex_m.passes.cortex_m_pass_manager import CortexMPassManager
    from executorch.backends.cortex_m.quantizer.quantizer import CortexMQuantizer
    from executorch.backends.cortex_m.target_config import CortexMTargetConfig
    from executorch.exir import to_edge_transform_and_lower

    cfg = _require_int8_recipe(job)
    example = tuple(job.example_inputs)
    module, rewrites = _cortex_m_form(job.module, example)
    graph = torch.export.export(module, example).module(check_guards=False)
    # CMSIS-NN convolutions are NHWC: the rewrites hand them channels-last (B, C, 1, T)
    # tensors (the backend's explicit-layout mode rejects float ops between convs).
    quantizer = CortexMQuantizer()
    quantized, _ = _calibrate(graph, quantizer, job.module, example, cfg)
    program = torch.export.export(quantized, example)
    with _quiet_arm_logs():
        edge = to_edge_transform_and_lower(program, compile_config=cortex_m_edge_compile_config())
        manager = CortexMPassManager(edge.exported_program(),
                                     target_config=CortexMTargetConfig.from_target_string(
                                         "cortex-m55"))
        edge._edge_programs["forward"] = manager.transform()
    ops = Counter(_op_name(n) for n in _compute_nodes(edge.exported_program().graph))
    cmsis = {k: v for k, v in ops.items() if k.startswith("cortex_m")}
    # Copies that only re-lay-out memory (the (B, C, 1, T) views, dim-order changes)
    # are reported apart: they are not arithmetic CMSIS-NN could take.
    layout = {k: v for k, v in ops.items() if k not in cmsis and any(
        p in k for p in _LAYOUT)}
    portable = {k: v for k, v in ops.items() if k not in cmsis and k not in layout}
    (job.out_dir / "model.pte").write_bytes(edge.to_executorch().buffer)
    total = sum(cmsis.values()) + sum(portable.values())
    summary = {"cmsis_nn_ops": cmsis, "portable_ops": portable, "layout_ops": layout,
               "cmsis_nn_share": round(sum(cmsis.values()) / total, 4) if total else 0.0,
               "rewrites": rewrites,
               "note": "no cycle estimate: Vela models the Ethos-U NPU only; run on a "
                       "Corstone-300 FVP or a board to time CMSIS-NN"}
    report = {"int8_compute_ops": sum(cmsis.values()), "float_compute_ops": 0}
    return Lowered({"model.pte": "pte-cortex-m"}, report, {"cortex_m": summary})


def _cortex_m_form(module, example):
    from avedge.targets.arm.rewrites import for_cmsis_nn

    return for_cmsis_nn(module, example)
