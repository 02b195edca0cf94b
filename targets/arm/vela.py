"""Vela's estimate, read from the CSVs it writes, turned into manifest figures.

Vela (the Ethos-U compiler) writes, per compiled TOSA graph:
  <name>_summary_<system>.csv   one row: cycles_total, inference_time (s), core_clock,
                                sram/on-chip/off-chip flash/dram memory used (KiB), MACs
  <name>_per-layer.csv          one row per NPU operator (with --verbose-performance):
                                op, Target (NPU/CPU), Op Cycles, MAC Count, staging usage

These are compiler estimates, not measurements: the manifest says so in `source`.
The ExecuTorch Arm backend compiles each delegate into the same output folder, so
several delegates overwrite each other's CSVs; lower.py therefore re-runs Vela
once per delegate into its own folder (`run_vela`) and sums the figures here.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from avedge.runtime.native_log import captured_stdout

ESTIMATE_SOURCE = "estimate (Vela), not a measurement"


def run_vela(tosa_path: Path, flags: list[str], out_dir: Path) -> tuple[Path, Path | None]:
    """Compile one TOSA file with Vela into `out_dir`; -> (summary csv, per-layer csv)."""
    from ethosu.vela import vela

    out_dir.mkdir(parents=True, exist_ok=True)
    # ExecuTorch passes Vela's flags as one space-joined string; a path with spaces
    # (the config .ini, the output folder) would be split, so refuse it up front.
    args = [*flags, f"--output-dir={out_dir}", str(tosa_path)]
    if any(" " in a for a in args):
        raise ValueError(f"Vela arguments may not contain spaces: {args}")
    with captured_stdout() as log:
        vela.main(args)
    summaries = sorted(out_dir.glob(f"{tosa_path.stem}_summary_*.csv"))
    if not summaries:
        raise RuntimeError(f"Vela wrote no summary CSV for {tosa_path.name}; its output:\n"
                           + log[0][-2000:])
    per_layer = out_dir / f"{tosa_path.stem}_per-layer.csv"
    return summaries[0], per_layer if per_layer.exists() else None


def read_summary(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise RuntimeError(f"{path}: expected one summary row, found {len(rows)}")
    return rows[0]


def read_per_layer(path: Path | None) -> list[dict]:
    if path is None:
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def delegate_figures(summary: dict, layers: list[dict]) -> dict:
    """One delegate's figures from its Vela CSVs (memory in KiB as Vela reports it)."""
    def f(key: str) -> float:
        return float(summary.get(key) or 0.0)

    # Where the constants (weights + command stream) live depends on the memory mode:
    # in SRAM for Sram_Only, else in flash or DRAM. Vela reports use per memory area.
    flash = f("on_chip_flash_memory_used") + f("off_chip_flash_memory_used")
    on_cpu = [r["Original Operator"] for r in layers if r.get("Target", "NPU") != "NPU"]
    return {
        "cycles": round(f("cycles_total")),
        "npu_cycles": round(f("cycles_npu")),
        "inference_s": f("inference_time"),
        "core_clock_hz": f("core_clock"),
        "sram_kib": round(f("sram_memory_used"), 3),
        "flash_kib": round(flash, 3),
        "dram_kib": round(f("dram_memory_used"), 3),
        "macs": round(f("nn_macs")),
        "weights_bytes": round(f("total_npu_encoded_weights")),
        "vela_ops": len(layers),
        "vela_ops_on_cpu": on_cpu,
        "system_config": summary.get("system_config"),
        "memory_mode": summary.get("memory_mode"),
        "accelerator": summary.get("accelerator_configuration"),
    }


def combine(delegates: list[dict], clock_mhz: float, op_counts: dict) -> dict:
    """The manifest's `npu_estimate`: totals over delegates plus the op split.

    Delegates run one after another, but each gets its own scratch and its own
    constants in the .pte, so SRAM and flash are summed (an upper bound on SRAM).
    """
    cycles = sum(d["cycles"] for d in delegates)
    vela_clock = {d["core_clock_hz"] for d in delegates}
    if vela_clock and vela_clock != {clock_mhz * 1e6}:
        raise RuntimeError(f"Vela estimated at {sorted(vela_clock)} Hz but the target "
                           f"clock is {clock_mhz} MHz; the system config .ini and the "
                           f"target disagree")
    npu, cpu = op_counts["npu"], op_counts["cpu"]
    total = npu + cpu
    return {
        "source": ESTIMATE_SOURCE,
        "accelerator": delegates[0]["accelerator"] if delegates else None,
        "system_config": delegates[0]["system_config"] if delegates else None,
        "memory_mode": delegates[0]["memory_mode"] if delegates else None,
        "clock_mhz": clock_mhz,
        "cycles_per_inference": cycles,
        "inference_ms_at_clock": round(cycles / (clock_mhz * 1e3), 6),
        "sram_kib": round(sum(d["sram_kib"] for d in delegates), 3),
        "flash_kib": round(sum(d["flash_kib"] for d in delegates), 3),
        "macs": sum(d["macs"] for d in delegates),
        "npu_op_share": round(npu / total, 4) if total else 0.0,
        "npu_ops": npu,
        "cpu_ops": cpu,
        "ops_on_cpu": op_counts["ops_on_cpu"],
        "cpu_fallback": bool(op_counts["ops_on_cpu"]),
        "delegates": delegates,
    }


def keep_files(out_dir: Path, index: int, n: int, tosa: Path, summary: Path,
               per_layer: Path | None) -> dict[str, str]:
    """Copy one delegate's TOSA + CSVs into the artifact under stable names."""
    suffix = "" if n == 1 else f".delegate{index}"
    files = {f"model{suffix}.tosa": (tosa, "tosa"),
             f"vela_summary{suffix}.csv": (summary, "csv")}
    if per_layer is not None:
        files[f"vela_per_layer{suffix}.csv"] = (per_layer, "csv")
    for name, (src, _) in files.items():
        shutil.copyfile(src, out_dir / name)
    return {name: fmt for name, (_, fmt) in files.items()}


def format_estimate(est: dict) -> list[str]:
    """Lines for `avedge info` / `avedge bench` (labelled as an estimate)."""
    lines = [
        (f"{est['accelerator']} at {est['clock_mhz']:g} MHz ({est['system_config']}, "
         f"{est['memory_mode']}): {est['cycles_per_inference']} cycles per inference = "
         f"{est['inference_ms_at_clock']:.4f} ms at the clock"),
        (f"SRAM {est['sram_kib']:.1f} KiB, flash {est['flash_kib']:.1f} KiB, "
         f"{est['macs']} MACs"),
        f"operators on the NPU: {est['npu_ops']}/{est['npu_ops'] + est['cpu_ops']} "
        f"({100 * est['npu_op_share']:.1f} %)"
        + (f"; on the CPU: {', '.join(o['op'] + ' x' + str(o['count']) for o in est['ops_on_cpu'])}"
           if est["ops_on_cpu"] else ""),
    ]
    return [f"{line}  [{ESTIMATE_SOURCE}]" if i == 0 else line for i, line in enumerate(lines)]
