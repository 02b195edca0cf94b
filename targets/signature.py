"""What a module looks like from outside: named inputs/outputs and, for a streaming
model, which inputs are the chunk, the conditions and the state.

The contract (see models/registry.py): optional attributes on the module —
`input_names`, `output_names`, `chunk_samples`, `lookahead_samples`, `sample_rate`,
`init_state()` — with `forward(chunk, *conditions, *state) -> (out, *new_state)`.
A module without them is still described: names come from forward's parameters, and
if the trailing outputs mirror trailing inputs in shape and dtype, those are state.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from avedge.runtime.errors import AvedgeError


@dataclass
class Signature:
    inputs: list[dict]  # [{name, shape, dtype}]
    outputs: list[dict]
    stream: dict | None  # the manifest's stream section
    init_state: dict[str, np.ndarray]  # state input name -> initial value
    example_outputs: list[torch.Tensor]


def _spec(name: str, t: torch.Tensor) -> dict:
    return {"name": name, "shape": list(t.shape), "dtype": str(t.detach().numpy().dtype)}


def _input_names(module, n: int) -> list[str]:
    names = getattr(module, "input_names", None)
    if names is None:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params[:n]] if len(params) >= n else []
        names = names or [f"input_{i}" for i in range(n)]
    return list(names)


def _as_tensors(out) -> list[torch.Tensor]:
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
        outputs = _as_tensors(module(*example_inputs))
    in_names = _input_names(module, len(example_inputs))
    if len(in_names) != len(example_inputs):
        raise AvedgeError(f"module.input_names has {len(in_names)} names for "
                          f"{len(example_inputs)} example inputs")
    n_state = _count_state(module, example_inputs, outputs)
    out_names = getattr(module, "output_names", None)
    if out_names is None:
        out_names = ["output"] if len(outputs) == 1 else (
            ["output"] + [f"new_{n}" for n in in_names[len(in_names) - n_state:]]
            if n_state else [f"output_{i}" for i in range(len(outputs))])
    if len(out_names) != len(outputs):
        raise AvedgeError(f"module.output_names has {len(out_names)} names for "
                          f"{len(outputs)} outputs")
    inputs = [_spec(n, t) for n, t in zip(in_names, example_inputs)]
    outs = [_spec(n, t) for n, t in zip(out_names, outputs)]
    if not n_state and not hasattr(module, "chunk_samples"):
        return Signature(inputs, outs, None, {}, outputs)
    state_in = in_names[len(in_names) - n_state:] if n_state else []
    init = _initial_state(module, example_inputs[len(example_inputs) - n_state:])
    stream = {
        "input": in_names[0],
        "output": out_names[0],
        "time_axis": -1,
        "chunk_samples": int(getattr(module, "chunk_samples", example_inputs[0].shape[-1])),
        "lookahead_samples": int(getattr(module, "lookahead_samples", 0)),
        "sample_rate": getattr(module, "sample_rate", None),
        "state": [{"input": i, "output": o} for i, o in zip(state_in, out_names[1:])],
        "conditions": in_names[1:len(in_names) - n_state],
    }
    if stream["chunk_samples"] != example_inputs[0].shape[-1]:
        raise AvedgeError(f"chunk_samples={stream['chunk_samples']} but the example chunk "
                          f"{in_names[0]!r} has {example_inputs[0].shape[-1]} samples on its "
                          f"last axis")
    return Signature(inputs, outs, stream, dict(zip(state_in, init)), outputs)


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
        state = _as_tensors(module.init_state())
        if [tuple(s.shape) for s in state] != [tuple(s.shape) for s in example_state]:
            raise AvedgeError("module.init_state() shapes "
                              f"{[tuple(s.shape) for s in state]} differ from the example state "
                              f"{[tuple(s.shape) for s in example_state]}")
    else:
        state = [torch.zeros_like(s) for s in example_state]
    return [s.detach().numpy().copy() for s in state]
