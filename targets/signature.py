"""What a module looks like from outside: named inputs/outputs and, for a streaming
model, which inputs are the chunk, the conditions and the state.

The contract (see models/registry.py): optional attributes on the module —
`input_names`, `output_names`, `chunk_samples`, `lookahead_samples`, `sample_rate`,
`init_state()` — with `forward(chunk, *conditions, *state) -> (out, *new_state)`.
A module without them is still described: names come from forward's parameters, and
if the trailing outputs mirror trailing inputs in shape and dtype, those are state.

Time axes (manifest `time_axis` on every input and output): a stream advances along the
chunk input's and the streamed output's time axis, by default their last axis. A module
whose tensors keep time elsewhere declares `time_axes = {name: axis}` for those inputs or
outputs (negative axes count from the end), e.g. poses (B, T, 12) in and out:
`time_axes = {"poses": 1, "output": 1}`; `chunk_samples` is then the size of that axis.
Tensors a stream does not split (state, conditions) get no time axis unless declared.

A module may also declare `ring_states`: [{"input", "output", "taps": [[row, lag]...]}]
for history kept as a ring buffer by the caller (runtime/ring_state.py): each call
outputs `frames` (B, N, ...) and takes `taps` (B, K, ...), tap k being row `row` of
the frames output `lag` calls earlier (zeros before the stream began). Ring inputs and
outputs come last, after the ordinary state.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from avedge.runtime.errors import AvedgeError


@dataclass
class Signature:
    inputs: list[dict]  # [{name, shape, dtype, time_axis}]
    outputs: list[dict]
    stream: dict | None  # the manifest's stream section
    init_state: dict[str, np.ndarray]  # state input name -> initial value
    example_outputs: list[torch.Tensor]


def _spec(name: str, t: torch.Tensor, time_axis: int | None = None) -> dict:
    return {"name": name, "shape": list(t.shape), "dtype": str(t.detach().numpy().dtype),
            "time_axis": time_axis}


def _time_axes(module, in_names, out_names, example_inputs, outputs, streamed) -> dict:
    """{tensor name: axis >= 0}: the module's `time_axes`, and the last axis for the
    streamed input and output it does not declare."""
    declared = dict(getattr(module, "time_axes", None) or {})
    ranks = {**{n: t.dim() for n, t in zip(in_names, example_inputs)},
             **{n: t.dim() for n, t in zip(out_names, outputs)}}
    unknown = sorted(set(declared) - set(ranks))
    if unknown:
        raise AvedgeError(f"module.time_axes names {unknown}, which are not inputs or outputs; "
                          f"accepted: {', '.join(ranks)}")
    axes = {}
    for name in (*declared, *(n for n in streamed if n not in declared)):
        axis, rank = declared.get(name, -1), ranks[name]
        if not isinstance(axis, int) or not -rank <= axis < rank:
            raise AvedgeError(f"module.time_axes[{name!r}] = {axis!r} is not an axis of its "
                              f"{rank}-D tensor; accepted: an int from {-rank} to {rank - 1}")
        axes[name] = axis % rank
    return axes


def _input_names(module, n: int) -> list[str]:
    names = getattr(module, "input_names", None)
    if names is None:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params[:n]] if len(params) >= n else []
        names = names or [f"input_{i}" for i in range(n)]
    return list(names)


def as_tensors(out) -> list[torch.Tensor]:
    out = list(out) if isinstance(out, (tuple, list)) else [out]
    if not all(isinstance(o, torch.Tensor) for o in out):
        raise AvedgeError("the model's forward must return a tensor or a tuple of tensors; got "
                          + ", ".join(type(o).__name__ for o in out))
    return out


def describe(module: torch.nn.Module, example_inputs: tuple) -> Signature:
    if not all(isinstance(x, torch.Tensor) for x in example_inputs):
        raise AvedgeError("example inputs must all be tensors; got "
                          + ", ".join(type(x).__name__ for x in example_inputs))
    with torch.no_grad():
        outputs = as_tensors(module(*example_inputs))
    in_names = _input_names(module, len(example_inputs))
    if len(in_names) != len(example_inputs):
        raise AvedgeError(f"module.input_names has {len(in_names)} names for "
                          f"{len(example_inputs)} example inputs")
    rings = [dict(r) for r in getattr(module, "ring_states", None) or []]
    n_ring = len(rings)
    n_state = n_ring + _count_state(module, example_inputs[:len(example_inputs) - n_ring],
                                    outputs[:len(outputs) - n_ring])
    out_names = getattr(module, "output_names", None)
    if out_names is None:
        out_names = ["output"] if len(outputs) == 1 else (
            ["output"] + [f"new_{n}" for n in in_names[len(in_names) - n_state:]]
            if n_state else [f"output_{i}" for i in range(len(outputs))])
    if len(out_names) != len(outputs):
        raise AvedgeError(f"module.output_names has {len(out_names)} names for "
                          f"{len(outputs)} outputs")
    streaming = bool(n_state) or hasattr(module, "chunk_samples")
    axes = _time_axes(module, in_names, out_names, example_inputs, outputs,
                      [in_names[0], out_names[0]] if streaming else [])
    inputs = [_spec(n, t, axes.get(n)) for n, t in zip(in_names, example_inputs)]
    outs = [_spec(n, t, axes.get(n)) for n, t in zip(out_names, outputs)]
    if not streaming:
        return Signature(inputs, outs, None, {}, outputs)
    _check_rings(rings, in_names, out_names, example_inputs, outputs)
    state_in = in_names[len(in_names) - n_state:len(in_names) - n_ring] if n_state else []
    ring_in = [r["input"] for r in rings]
    init = _initial_state(module, example_inputs[len(example_inputs) - n_state:])
    chunk_len = example_inputs[0].shape[axes[in_names[0]]]
    stream = {
        "input": in_names[0],
        "output": out_names[0],
        "chunk_samples": int(getattr(module, "chunk_samples", chunk_len)),
        "lookahead_samples": int(getattr(module, "lookahead_samples", 0)),
        "sample_rate": getattr(module, "sample_rate", None),
        "state": [{"input": i, "output": o} for i, o in zip(state_in, out_names[1:])],
        "conditions": in_names[1:len(in_names) - n_state],
    }
    if rings:
        stream["rings"] = rings
    if stream["chunk_samples"] != chunk_len:
        raise AvedgeError(f"chunk_samples={stream['chunk_samples']} but the example chunk "
                          f"{in_names[0]!r} has {chunk_len} samples on its time axis "
                          f"{axes[in_names[0]]} (declare another with module.time_axes)")
    return Signature(inputs, outs, stream, dict(zip(state_in + ring_in, init)), outputs)


def _check_rings(rings, in_names, out_names, example_inputs, outputs) -> None:
    """Ring inputs/outputs last, in order; every tap names an existing row and a lag >= 1."""
    n = len(rings)
    if not n:
        return
    if ([r.get("input") for r in rings] != list(in_names[len(in_names) - n:])
            or [r.get("output") for r in rings] != list(out_names[len(out_names) - n:])):
        raise AvedgeError(f"ring_states {[(r.get('input'), r.get('output')) for r in rings]} "
                          f"must name the last {n} inputs and outputs, in order")
    for r, taps_t, frames_t in zip(rings, example_inputs[len(example_inputs) - n:],
                                   outputs[len(outputs) - n:]):
        taps = [list(map(int, t)) for t in r.get("taps", [])]
        rows = frames_t.shape[1] if frames_t.dim() >= 2 else 0
        bad = [t for t in taps if len(t) != 2 or not 0 <= t[0] < rows or t[1] < 1]
        if (bad or taps_t.dim() < 2 or taps_t.shape[1] != len(taps)
                or taps_t.shape[2:] != frames_t.shape[2:]):
            raise AvedgeError(
                f"ring {r['input']!r} -> {r['output']!r}: {len(taps)} taps for an input of "
                f"shape {tuple(taps_t.shape)} and frames of shape {tuple(frames_t.shape)}"
                + (f"; bad [row, lag] entries {bad[:3]} (row < {rows}, lag >= 1)" if bad else
                   "; taps need shape (B, n_taps, *frame) and frames (B, rows, *frame)"))
        r["taps"] = taps


def _count_state(module, example_inputs, outputs) -> int:
    """Trailing outputs that mirror trailing inputs (shape and dtype) are state."""
    if getattr(module, "streaming", True) is False:
        return 0
    n = 0
    while (n + 1 < len(outputs) and n + 1 < len(example_inputs)
           and outputs[-1 - n].shape == example_inputs[-1 - n].shape
           and outputs[-1 - n].dtype == example_inputs[-1 - n].dtype):
        n += 1
    return n


def _initial_state(module, example_state) -> list[np.ndarray]:
    if hasattr(module, "init_state"):
        state = as_tensors(module.init_state())
        if [tuple(s.shape) for s in state] != [tuple(s.shape) for s in example_state]:
            raise AvedgeError("module.init_state() shapes "
                              f"{[tuple(s.shape) for s in state]} differ from the example state "
                              f"{[tuple(s.shape) for s in example_state]}")
    else:
        state = [torch.zeros_like(s) for s in example_state]
    return [s.detach().numpy().copy() for s in state]
