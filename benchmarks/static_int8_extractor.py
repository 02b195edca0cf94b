"""Why static int8 ruined the speech extractor, measured: SI-SDRi of the PT2E-converted
extractor graph (q/dq reference ops, run eagerly chunk by chunk, as the runtime streams)
against fp32 on the same val mixtures, for Int8StaticConfig(ops="all") (XNNPACK's quantizer
on every op it knows: the old static int8) and ops="compute" (weighted ops only, the
default), and, for "all", the tensors a per-tensor int8 scale holds worst (signal-to-
quantization-noise ratio of each q/dq pair on calibration batches, with the range the
calibration chose).

    AVEDGE_VOICEBANK=BANK python benchmarks/static_int8_extractor.py [--eval 8] [--worst 16]

Calibration: the extractor's own calibration set (Extractor.calibration_inputs(): val-split
mixtures of the shipped calibration file, drawn with another seed than the eval set).
Accuracy only: the converted graph is a reference, not the XNNPACK kernels (the sweep
measures the artifacts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def stream_si_sdri(graph, model, examples) -> list[float]:
    """Per-mixture SI-SDRi of `graph` (the extractor's per-chunk signature) streamed 8 ms at
    a time from zero state, enrolled through the fp32 speaker encoder."""
    from avedge.models.common.metrics import si_sdri
    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor.speaker_encoder import ENROLL_SAMPLES, fit_enrollment

    gains = []
    for e in examples:
        enroll = fit_enrollment(torch.from_numpy(np.asarray(e["enrollment"], np.float32)),
                                ENROLL_SAMPLES)
        emb = model.speaker_encoder(enroll[None])
        mix = torch.from_numpy(np.asarray(e["mixture"], np.float32))[None]
        length = mix.shape[1]
        n = -(-(length + se.LOOKAHEAD) // se.CHUNK) * se.CHUNK
        x = torch.nn.functional.pad(mix, (0, n - length))
        state, outs = model.init_state(1), []
        for k in range(n // se.CHUNK):
            out = graph(x[:, k * se.CHUNK:(k + 1) * se.CHUNK], emb, *state)
            outs.append(out[0])
            state = tuple(out[1:])
        est = torch.cat(outs, 1)[0, se.LOOKAHEAD: se.LOOKAHEAD + length]
        gains.append(float(si_sdri(est, torch.from_numpy(np.asarray(e["target"], np.float32)),
                                   mix[0])))
    return gains


def _is_q(node) -> bool:
    name = str(node.target)
    return node.op == "call_function" and "quantize_per_tensor" in name and "dequantize" not in name


def tensor_sqnr(converted, batches) -> list[dict]:
    """Each activation q/dq pair of `converted`: the tensor it quantizes, its calibrated
    range, and its SQNR (dB) over `batches` (signal energy / rounding+clipping energy)."""
    acc: dict[str, list] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if _is_q(node):
                x, scale, zero = (self.env[a] if isinstance(a, torch.fx.Node) else a
                                  for a in node.args[:3])
                scale, zero = float(scale), int(zero)
                back = (out.float() - zero) * scale
                e = acc.setdefault(node.args[0].name, [0.0, 0.0, scale * (-128 - zero),
                                                       scale * (127 - zero)])
                e[0] += float((x.float() ** 2).sum())
                e[1] += float(((x.float() - back) ** 2).sum())
            return out

    for b in batches:
        Recorder(converted).run(*b)
    rows = [{"tensor": k, "sqnr_db": round(10 * np.log10(max(s, 1e-30) / max(n, 1e-30)), 1),
             "range": [round(lo, 4), round(hi, 4)]} for k, (s, n, lo, hi) in acc.items()]
    return sorted(rows, key=lambda r: r["sqnr_db"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=int, default=8, help="val mixtures scored")
    ap.add_argument("--bank", default=None, help="voice bank (default: $AVEDGE_VOICEBANK)")
    ap.add_argument("--worst", type=int, default=16, help="tensors listed, lowest SQNR first")
    ap.add_argument("--calib-every", type=int, default=1,
                    help="use every n-th calibration batch (calibration-size check)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from avedge.models.speech_extractor import model as se
    from avedge.models.speech_extractor.evaluate import eval_set
    from avedge.quantize import pt2e_int8
    from avedge.quantize.configs import Int8StaticConfig

    model = se.build()
    examples = eval_set("val", args.eval, args.bank)
    calib = model.calibration_inputs()[::args.calib_every]
    # The module's own calibration set, thinned for the size check.
    model.calibration_inputs = lambda: calib
    out = {"eval_n": args.eval, "calibration": {**model.calibration_provenance(),
                                                "batches_used": len(calib)}}
    with torch.no_grad():
        t = time.perf_counter()
        fp32 = stream_si_sdri(model, model, examples)
        out["fp32"] = {"si_sdri_db": round(float(np.mean(fp32)), 3)}
        print(f"fp32 eager: {np.mean(fp32):.3f} dB ({time.perf_counter() - t:.0f} s)", flush=True)
        for ops in ("all", "compute"):
            t = time.perf_counter()
            graph, _ = pt2e_int8.quantize_pt2e_int8(model, se.example_inputs(model),
                                                    Int8StaticConfig(ops=ops))
            gains = stream_si_sdri(graph, model, examples)
            n_q = sum(_is_q(n) for n in graph.graph.nodes)
            row = {"si_sdri_db": round(float(np.mean(gains)), 3),
                   "delta_db": round(float(np.mean(gains) - np.mean(fp32)), 3),
                   "worst_mixture_delta_db": round(float(np.min(np.subtract(gains, fp32))), 3),
                   "activation_quantizers": n_q}
            if ops == "all":
                row["worst_tensors"] = tensor_sqnr(graph, calib[::max(1, len(calib) // 32)]
                                                   )[:args.worst]
            out[f"static_{ops}"] = row
            print(f"static int8 ops={ops}: {row['si_sdri_db']:.3f} dB "
                  f"({row['delta_db']:+.3f}; {n_q} activation quantizers; "
                  f"{time.perf_counter() - t:.0f} s)", flush=True)
    for r in out["static_all"]["worst_tensors"]:
        print(f"  {r['tensor']:>16s}  SQNR {r['sqnr_db']:6.1f} dB  range {r['range']}")
    if args.json:
        from avedge.runtime.fsutil import atomic_write_json

        atomic_write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
