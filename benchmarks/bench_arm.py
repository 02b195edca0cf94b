"""The speech extractor on the Arm NPU targets: Vela's estimate and the fake-quant accuracy.

For each target (and activation scheme) this exports the speech extractor
(hearable-npu: Ethos-U55-128 at 160 MHz; ethos-u85: U85-128 at 200 MHz), prints the
manifest's Vela figures (cycles per 8 ms chunk, ms at the clock, SRAM/flash KiB, NPU
op share) and the TOSA reference check, then measures SI-SDRi of the fake-quant model
(the model as the NPU computes it, simulated in PyTorch, streamed chunk by chunk)
against fp32 on the family's "heldout_voices" eval set (test-split voices, 0 dB SIR,
5 dB SNR; models/speech_extractor/evaluate.py).

    python benchmarks/bench_arm.py --targets hearable-npu ethos-u85 --n-eval 8 \
        --activations a8w8-log16 a8w8 a16w8 --forms npu plain

Forms: "npu" is what `avedge export speech-extractor --target hearable-npu` lowers
(models/speech_extractor/npu.py: FiLM hoisted into the run-once condition, LayerNorm affine
folded into it, dilated history as ring-buffer taps); "plain" is the streaming
extractor graph as it is (bar the equivalent Arm rewrites), for comparison.

Cycle figures are Vela's compiler estimates, not measurements on silicon.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def stream(step, form, model, mixture: torch.Tensor, enrollment: torch.Tensor) -> torch.Tensor:
    """Whole-utterance extraction through a one-chunk graph `step` of `form`, aligned like
    `speech_extractor.extract`: (1, L) -> (1, L)."""
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor import npu

    length = mixture.shape[1]
    n = -(-(length + se.LOOKAHEAD) // se.CHUNK) * se.CHUNK
    padded = torch.nn.functional.pad(mixture, (0, n - length))
    outs = []
    with torch.no_grad():
        if form == "npu":
            ring = npu.RingExtractor(model)
            cond = npu.FilmCondition(model)(enrollment)
            history = npu.RingHistory(ring.ring_states)
            init = ring.init_state(1)
            state, taps = list(init[:2]), list(init[2:])
        else:
            cond, state = model.speaker_encoder(enrollment), list(model.init_state(1))
        for k in range(n // se.CHUNK):
            chunk = padded[:, k * se.CHUNK:(k + 1) * se.CHUNK]
            if form == "npu":
                out, *rest = step(chunk, cond, *state, *taps)
                state, frames = rest[:2], rest[2:]
                history.push(frames)
                taps = history.taps()
            else:
                out, *state = step(chunk, cond, *state)
            outs.append(out)
    return torch.cat(outs, dim=1)[:, se.LOOKAHEAD: se.LOOKAHEAD + length]


def si_sdri(step, form, model, examples) -> list[float]:
    """Per-mixture SI-SDR improvement (dB) of `step` streamed over `examples`."""
    from avedge.models.common.metrics import si_sdri as improvement
    from avedge.models.speech_extractor import model as se

    gains = []
    for e in examples:
        mix = torch.from_numpy(np.asarray(e["mixture"], np.float32))[None]
        tgt = torch.from_numpy(np.asarray(e["target"], np.float32))[None]
        enr = se.fit_enrollment(torch.from_numpy(np.asarray(e["enrollment"], np.float32)))
        est = stream(step, form, model, mix, enr[None])
        gains.append(float(improvement(est, tgt, mix)))
    return gains


def paired_delta(quant: list[float], fp32: list[float]) -> dict:
    """Mean loss vs fp32 on the same mixtures, with its standard error (the per-mixture
    spread of quantization's effect, not of the mixtures' difficulty)."""
    d = np.asarray(quant) - np.asarray(fp32)
    se_db = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"delta_db": round(float(d.mean()), 3), "delta_se_db": round(se_db, 3)}


def graph_of(form: str, model, log_ranges: int = 1):
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor import npu

    if form == "npu":
        return npu.components(model, log_ranges)["extractor"]
    return model, se.example_inputs(model)


def run(target_name: str, activations: str, form: str, model, examples,
        out_root: Path, fp32: list[float], log_ranges: int = 1) -> dict:
    from avedge.quantize import Int8StaticConfig
    from avedge.targets import get_target
    from avedge.targets.arm.lower import quantize_for_ethos_u
    from avedge.targets.arm.precision import as_npu_computes

    from avedge.api import export

    target = get_target(target_name)
    target = dataclasses.replace(target, precision=activations)  # the board, this scheme
    graph, example = graph_of(form, model, log_ranges)
    # Accuracy first: it stands even when the export below is refused.
    fq, _, _, _ = quantize_for_ethos_u(graph, example, target, Int8StaticConfig(),
                                       activations=activations)
    fq = as_npu_computes(fq)  # int16 tables interpolated as the NPU does
    fq_gains = si_sdri(fq, form, model, examples)
    fq_db = float(np.mean(fq_gains))
    delta = paired_delta(fq_gains, fp32)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # One graph (this form of the extractor), not the family's two-graph plan.
            art = export(graph, target_name, out_root / f"{target_name}-{activations}-{form}",
                         example_inputs=example, npu_precision=activations,
                         allow_over_budget=True)
    except Exception as exc:  # noqa: BLE001 - a refusal is a result here
        return {"target": target_name, "activations": activations, "form": form,
                "log_ranges": log_ranges, "fake_quant_si_sdri_db": round(fq_db, 3), **delta,
                "refused": f"{type(exc).__name__}: {exc}"[:600]}
    export_s = time.perf_counter() - t0
    fallbacks = [str(w.message) for w in caught if "cannot take" in str(w.message)]
    m = art.manifest
    est = m["npu_estimate"]
    return {
        "target": target_name, "activations": activations, "form": form, "npu": target.npu,
        "log_ranges": log_ranges,
        "clock_mhz": est["clock_mhz"], "cycles_per_chunk": est["cycles_per_inference"],
        "ms_per_chunk_at_clock": est["inference_ms_at_clock"],
        "sram_kib": est["sram_kib"], "flash_kib": est["flash_kib"],
        "npu_op_share": est["npu_op_share"], "npu_ops": est["npu_ops"],
        "ops_on_cpu": est["ops_on_cpu"], "rewrites": est["rewrites"],
        "macs": est["macs"], "tosa_check": m["tosa_check"],
        "budgets": m["budgets"], "fake_quant_si_sdri_db": round(fq_db, 3), **delta,
        "fallback_warnings": fallbacks, "export_s": round(export_s, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", nargs="+", default=["hearable-npu", "ethos-u85"])
    p.add_argument("--activations", nargs="+", default=["a8w8-log16"],
                   choices=["a8w8-log16", "a8w8", "a16w8", "a8w4"])
    p.add_argument("--forms", nargs="+", default=["npu"], choices=["npu", "plain"])
    p.add_argument("--n-eval", type=int, default=8)
    p.add_argument("--log-ranges", type=int, nargs="+", default=[1],
                   help="int16 log tables in the NPU form's features (models/speech_extractor/npu.py "
                        "ranged_log_power; 1 = one table, what the shipped weights were tuned on)")
    p.add_argument("--bank", default=str(Path.home() / ".cache/avedge/voicebank"))
    p.add_argument("--weights", help="extractor weights (default: the plain-mask float "
                                     "file; pass a copy while a run is rewriting it)")
    p.add_argument("--json", help="write the results here as well")
    args = p.parse_args()

    from avedge.models.registry import get_family
    from avedge.models.speech_extractor import model as se

    torch.set_num_threads(1)
    weights = args.weights or str(se.MASK_WEIGHTS_FILE)
    model = se.build(weights=weights)
    examples = get_family(se.NAME).eval_set("heldout_voices", args.n_eval, args.bank)
    fp32 = si_sdri(model, "plain", model, examples)
    results = {"weights": weights, "n_eval": len(examples),
               "fp32_si_sdri_db": round(float(np.mean(fp32)), 3), "runs": []}
    print(f"fp32 SI-SDRi over {len(examples)} eval mixtures: {np.mean(fp32):.3f} dB", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, act, form, ranges in itertools.product(args.targets, args.activations,
                                                         args.forms, args.log_ranges):
            if form == "plain" and ranges != 1:
                continue  # the plain graph has the model's own log
            try:
                r = run(name, act, form, model, examples, Path(tmp), fp32, ranges)
            except Exception as exc:  # noqa: BLE001 - keep the other configs' figures
                r = {"target": name, "activations": act, "form": form,
                     "refused": f"{type(exc).__name__}: {exc}"[:600]}
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
                continue
            results["runs"].append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "budgets"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
