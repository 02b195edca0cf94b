"""tiny-stream: a small causal convolution stack that exercises the streaming contract.

It is the foundation's demo model: untrained (random, seeded weights), it exists to
show that a stateful chunked model exports, streams and matches its whole-signal
form. The trained reference models (speech-extractor, lipreader, ...) follow the
same contract.

Streaming form: forward(chunk, *state) -> (out, *new_state); each state tensor is the
history one causal conv layer needs (its left context). Output is delayed by
LOOKAHEAD samples: output sample n depends on input up to n + LOOKAHEAD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avedge.models.registry import Family
from avedge.runtime.audio_io import SAMPLE_RATE
from torch import nn

NAME = "tiny-stream"
CHUNK = 128  # 8 ms at 16 kHz
LOOKAHEAD = 32  # 2 ms


@dataclass(frozen=True)
class Dims:
    channels: int = 32
    kernel: int = 5
    dilations: tuple = (1, 2, 4)
    seed: int = 0


class CausalConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int):
        super().__init__()
        self.context = (kernel - 1) * dilation  # samples of history this layer needs
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)

    def forward(self, x, history):  # x (B, C, T), history (B, C, context)
        full = torch.cat([history, x], dim=-1)
        return self.conv(full), full[..., full.shape[-1] - self.context:]


class TinyStream(nn.Module):
    family = NAME
    chunk_samples = CHUNK
    lookahead_samples = LOOKAHEAD
    sample_rate = SAMPLE_RATE

    def __init__(self, dims: Dims = Dims()):
        super().__init__()
        self.dims = dims
        c = dims.channels
        chans = [1] + [c] * len(dims.dilations)
        self.layers = nn.ModuleList(
            CausalConv(chans[i], chans[i + 1], dims.kernel, d) for i, d in enumerate(dims.dilations))
        self.head = nn.Conv1d(c, 1, 1)
        self.input_names = ["chunk"] + [f"state_{i}" for i in range(len(self.layers))]
        self.output_names = ["out"] + [f"new_state_{i}" for i in range(len(self.layers))]

    def init_state(self) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(1, layer.conv.in_channels, layer.context) for layer in self.layers)

    def forward(self, chunk, *state):  # chunk (1, T); state[i] (1, C_i, context_i)
        h = chunk.unsqueeze(1)  # (1, 1, T)
        new_state = []
        for layer, hist in zip(self.layers, state):
            h, hist = layer(h, hist)
            h = torch.tanh(h)
            new_state.append(hist)
        return (self.head(h).squeeze(1), *new_state)  # (1, T), ...

    def forward_full(self, signal):  # signal (1, N) -> (1, N), aligned, non-streaming
        padded = torch.nn.functional.pad(signal, (0, LOOKAHEAD))
        out = self.forward(padded, *self.init_state())[0]
        return out[..., LOOKAHEAD:]


def build(dims: Dims | None = None, weights: str | None = None) -> TinyStream:
    dims = dims or Dims()
    torch.manual_seed(dims.seed)
    model = TinyStream(dims).eval()
    if weights:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights))
    return model


def example_inputs(model: TinyStream) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(1, CHUNK, generator=gen) * 0.1, *model.init_state())


FAMILY = Family(
    name=NAME,
    summary="a tiny causal conv streamer (8 ms chunks, 2 ms lookahead) for tests and demos",
    build=build,
    example_inputs=example_inputs,
    dims=Dims,
)
