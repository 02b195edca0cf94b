"""The speech extractor on the Arm NPU targets: Vela's estimate and the fake-quant accuracy.

For each target (and activation scheme) this exports the shipped speech extractor
(hearable-npu: Ethos-U55-128 at 160 MHz; ethos-u85: U85-128 at 200 MHz), prints the
manifest's Vela figures (cycles per 8 ms chunk, ms at the clock, SRAM/flash KiB, NPU
op share) and the TOSA reference check, then measures SI-SDRi of the fake-quant model
(the model as the NPU computes it, simulated in PyTorch, streamed chunk by chunk)
against fp32 on the corpus `eval_mixtures` (held-out voices, 0 dB SIR, 5 dB SNR).

    python benchmarks/bench_arm.py --targets hearable-npu ethos-u85 --n-eval 8 \
        --activations a8w8 a8w4 --forms as-is film-hoisted

Forms: "as-is" exports the extractor graph unchanged (bar the equivalent NPU rewrites);
"film-hoisted" moves the FiLM projection of the speaker embedding out of the per-chunk
graph into the speaker-encoder side (targets/npu_rewrites.HoistedCondition): same
function, a third fewer weights read per chunk.

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


def stream_extract(step, model, mixture: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
    """Whole-utterance extraction through a one-chunk graph `step`, aligned like
    `speech_extractor.extract`: (1, L) -> (1, L)."""
    from avedge.models import speech_extractor as se

    length = mixture.shape[1]
    n = -(-(length + se.LOOKAHEAD) // se.CHUNK) * se.CHUNK
    padded = torch.nn.functional.pad(mixture, (0, n - length))
    state = model.init_state(1)
    outs = []
    with torch.no_grad():
        for k in range(n // se.CHUNK):
            out, *state = step(padded[:, k * se.CHUNK:(k + 1) * se.CHUNK], speaker, *state)
            outs.append(out)
    return torch.cat(outs, dim=1)[:, se.LOOKAHEAD: se.LOOKAHEAD + length]


def si_sdri(step, model, examples) -> float:
    from avedge.models import speech_extractor as se

    gains = []
    for e in examples:
        mix = torch.from_numpy(np.asarray(e["mixture"], np.float32))[None]
        tgt = torch.from_numpy(np.asarray(e["target"], np.float32))[None]
        enr = se.fit_enrollment(torch.from_numpy(np.asarray(e["enrollment"], np.float32)))
        with torch.no_grad():
            emb = model.speaker_encoder(enr[None])
        est = step(mix, emb) if step is not None else stream_extract(model, model, mix, emb)
        gains.append(float(se.si_sdr(est, tgt) - se.si_sdr(mix, tgt)))
    return float(np.mean(gains))


def run(target_name: str, activations: str, form: str, model, examples,
        out_root: Path) -> dict:
    from avedge.models import speech_extractor as se
    from avedge.quantize import Int8StaticConfig
    from avedge.targets import get_target
    from avedge.targets.lower_arm import quantize_for_ethos_u
    from avedge.targets.npu_rewrites import HoistedCondition

    target = get_target(target_name)
    if activations != "a8w8":  # same board, int16 activations or int4 weights
        target = dataclasses.replace(target, precision=activations)
    example = se.example_inputs(model)
    graph, condition = model, (lambda emb: emb)
    if form == "film-hoisted":  # FiLM projection once per enrollment, not per chunk
        graph = HoistedCondition(model, "film")
        example, condition = graph.example_inputs(example), graph.project
    # Accuracy first: it stands even when the export below is refused.
    fq, _, _, _ = quantize_for_ethos_u(graph, example, target, Int8StaticConfig(),
                                       activations=activations)
    fq_db = si_sdri(lambda mix, emb: stream_extract(fq, model, mix, condition(emb)), model,
                    examples)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            art = target.export(graph, example,
                                out_root / f"{target_name}-{activations}-{form}",
                                family=se.NAME, allow_over_budget=True)
    except Exception as exc:  # noqa: BLE001 - a refusal is a result here
        return {"target": target_name, "activations": activations, "form": form,
                "fake_quant_si_sdri_db": round(fq_db, 3),
                "refused": f"{type(exc).__name__}: {exc}"[:600]}
    export_s = time.perf_counter() - t0
    fallbacks = [str(w.message) for w in caught if "cannot take" in str(w.message)]
    m = art.manifest
    est = m["npu_estimate"]
    return {
        "target": target_name, "activations": activations, "form": form, "npu": target.npu,
        "clock_mhz": est["clock_mhz"], "cycles_per_chunk": est["cycles_per_inference"],
        "ms_per_chunk_at_clock": est["inference_ms_at_clock"],
        "sram_kib": est["sram_kib"], "flash_kib": est["flash_kib"],
        "npu_op_share": est["npu_op_share"], "npu_ops": est["npu_ops"],
        "ops_on_cpu": est["ops_on_cpu"], "rewrites": est["rewrites"],
        "macs": est["macs"], "tosa_check": m["tosa_check"],
        "budgets": m["budgets"], "fake_quant_si_sdri_db": round(fq_db, 3),
        "fallback_warnings": fallbacks, "export_s": round(export_s, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", nargs="+", default=["hearable-npu", "ethos-u85"])
    p.add_argument("--activations", nargs="+", default=["a8w8"],
                   choices=["a8w8", "a16w8", "a8w4"])
    p.add_argument("--forms", nargs="+", default=["as-is"], choices=["as-is", "film-hoisted"])
    p.add_argument("--n-eval", type=int, default=8)
    p.add_argument("--bank", default=str(Path.home() / ".cache/avedge/voicebank"))
    p.add_argument("--weights", help="extractor weights (default: the shipped file; pass a "
                                     "copy while a training run is rewriting it)")
    p.add_argument("--json", help="write the results here as well")
    args = p.parse_args()

    from avedge.models import speech_extractor as se
    from avedge.models.corpus.mixtures import eval_mixtures

    torch.set_num_threads(1)
    weights = args.weights or str(se.WEIGHTS_FILE)
    model = se.build(weights=weights)
    examples = eval_mixtures(args.bank, "test", n=args.n_eval)
    fp32 = si_sdri(lambda mix, emb: se.extract(model, mix, emb), model, examples)
    results = {"weights": weights, "n_eval": len(examples),
               "fp32_si_sdri_db": round(fp32, 3), "runs": []}
    print(f"fp32 SI-SDRi over {len(examples)} eval mixtures: {fp32:.3f} dB", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, act, form in itertools.product(args.targets, args.activations, args.forms):
            try:
                r = run(name, act, form, model, examples, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - keep the other configs' figures
                r = {"target": name, "activations": act, "form": form,
                     "refused": f"{type(exc).__name__}: {exc}"[:600]}
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
                continue
            r["delta_db"] = round(r["fake_quant_si_sdri_db"] - fp32, 3)
            results["runs"].append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "budgets"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
