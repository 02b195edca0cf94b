"""SI-SDRi of the speech extractor's NPU graph as the NPU computes it: the lowered TOSA
graph run bit-exactly by the TOSA reference model, streamed chunk by chunk with its
ring-buffer state, against the fake-quant PyTorch model and fp32 on the same mixtures.

The fake-quant model here emulates the NPU's int16 tables (targets/arm_precision.py:
TOSA interpolates inside 512 segments, plain fake-quant evaluates the function exactly);
this script is the check that the emulated model scores what the integer graph scores.
Slow: the reference model runs each 8 ms chunk in ~0.4 s on the 2-core VM (~4 min per
4 s clip).

    python benchmarks/score_npu_tosa.py --activations a8w8-log16 --n 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def lower(ring, example, activations: str):
    """-> (fake-quant module, edge program, [(delegate, tosa bytes)])."""
    from avedge.quantize import Int8StaticConfig
    from avedge.targets import get_target
    from avedge.targets.arm.lower import _delegates, ethos_u_spec, quantize_for_ethos_u
    from avedge.targets.arm.precision import as_npu_computes
    from executorch.backends.arm.ethosu import EthosUPartitioner
    from executorch.backends.arm.tosa.backend import arm_get_first_delegation_tag
    from executorch.exir import to_edge_transform_and_lower

    target = dataclasses.replace(get_target("hearable-npu"), precision=activations)
    work = Path(tempfile.mkdtemp(prefix="avedge-tosa-score-"))
    spec = ethos_u_spec(target, work)
    fq, _, _, _ = quantize_for_ethos_u(ring, example, target, Int8StaticConfig(), spec)
    edge = to_edge_transform_and_lower(torch.export.export(fq, example),
                                       partitioner=[EthosUPartitioner(spec)])
    tosas = []
    for d in _delegates(edge.exported_program().graph_module):
        tag = arm_get_first_delegation_tag(d.original_module.graph_module)
        tosas.append((d, (work / f"output_{tag}_{spec.tosa_spec}.tosa").read_bytes()))
    return as_npu_computes(fq), edge.exported_program(), tosas


def stream(step, ring, film, mixture):
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor import npu

    length = mixture.shape[1]
    n = -(-(length + se.LOOKAHEAD) // se.CHUNK) * se.CHUNK
    x = torch.nn.functional.pad(mixture, (0, n - length))
    history = npu.RingHistory(ring.ring_states)
    init = ring.init_state(1)
    state, taps = list(init[:2]), list(init[2:])
    outs = []
    with torch.no_grad():
        for c in range(n // se.CHUNK):
            y, *rest = step(x[:, c * se.CHUNK:(c + 1) * se.CHUNK], film, *state, *taps)
            state, frames = rest[:2], rest[2:]
            history.push(frames)
            taps = history.taps()
            outs.append(y)
    return torch.cat(outs, 1)[:, se.LOOKAHEAD:se.LOOKAHEAD + length]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--activations", default="a8w8-log16",
                   choices=["a8w8-log16", "a8w8", "a16w8"])
    p.add_argument("--n", type=int, default=3, help="eval mixtures (test split)")
    p.add_argument("--bank", default=str(Path.home() / ".cache/avedge/voicebank"))
    p.add_argument("--weights", help="extractor weights (default: the plain-mask float file)")
    p.add_argument("--json", help="write the results here as well")
    args = p.parse_args()

    from avedge.models.common.metrics import si_sdr
    from avedge.models.registry import get_family
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor import npu
    from avedge.targets.arm.tosa import run_with_tosa

    torch.set_num_threads(1)
    model = se.build(weights=args.weights or str(se.MASK_WEIGHTS_FILE))
    ring, example = npu.components(model)["extractor"]
    cond = npu.FilmCondition(model)
    fq, program, tosas = lower(ring, example, args.activations)
    rows = []
    for e in get_family(se.NAME).eval_set("heldout_voices", args.n, args.bank):
        mix = torch.from_numpy(np.asarray(e["mixture"], np.float32))[None]
        tgt = torch.from_numpy(np.asarray(e["target"], np.float32))[None]
        enr = se.fit_enrollment(torch.from_numpy(np.asarray(e["enrollment"], np.float32)))[None]
        t0 = time.time()
        with torch.no_grad():
            film = cond(enr)
            ests = {"fp32": se.extract(model, mix, model.speaker_encoder(enr)),
                    "fake_quant": stream(fq, ring, film, mix),
                    "tosa": stream(lambda *a: run_with_tosa(program, tosas, a), ring, film, mix)}
        base = float(si_sdr(mix, tgt))
        row = {k: round(float(si_sdr(v, tgt)) - base, 3) for k, v in ests.items()}
        row["seconds"] = round(time.time() - t0)
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("fp32", "fake_quant",
                                                                         "tosa")}
    result = {"activations": args.activations, "n": len(rows), "si_sdri_db": mean,
              "tosa_minus_fp32_db": round(mean["tosa"] - mean["fp32"], 3), "rows": rows}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
