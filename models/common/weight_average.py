"""Exponential moving average of a model's weights, for the weights a run ships.

SI-SDR training with a batch of 8 is noisy: the weights at any one step sit somewhere in a
cloud around the minimum the schedule is circling. Their running average sits nearer its
middle, at no cost to the step (one `lerp_` per tensor). A model may carry a companion
that is not its submodule (the speech extractor's `speaker_encoder` must stay out of
the exported graph): it is averaged alongside.

    >>> import torch
    >>> from avedge.models.speech_extractor import model as se
    >>> model = se.build(se.Dims(d_model=8, d_hidden=16, n_blocks=1))
    >>> avg = WeightAverage(model, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = avg.model.in_proj.bias.fill_(0.0)
    ...     _ = model.in_proj.bias.fill_(2.0)
    >>> avg.update(model, step=10**6)  # long after the start: the plain decay applies
    >>> float(avg.model.in_proj.bias[0])
    1.0
"""

from __future__ import annotations

import copy

import torch


def check_decay(decay: float) -> None:
    """Refuse a decay that is no average, saying what is accepted."""
    if not 0.0 <= decay < 1.0:
        from avedge.runtime.errors import AvedgeError

        raise AvedgeError(f"--ema must be in [0, 1) (0: ship the last step's weights, "
                          f"0.999: average over ~1000 steps); got {decay}")


COMPANION = "speaker_encoder"  # attribute of a module trained with the model, not inside it


def _modules(model) -> list[torch.nn.Module]:
    companion = getattr(model, COMPANION, None)
    return [model] if companion is None else [model, companion]


def _tensors(model) -> list[torch.Tensor]:
    return [t for m in _modules(model) for t in m.state_dict().values()]


class WeightAverage:
    """`model` (and its companion, if any) averaged as training moves it."""

    def __init__(self, model, decay: float):
        check_decay(decay)
        self.decay = decay
        self.model = copy.deepcopy(model)  # deep-copies the companion with it
        for m in _modules(self.model):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step: int) -> None:
        # Early in a run from scratch the weights move fast and the first ones are noise:
        # the decay ramps up (1 + step) / (10 + step) so the average forgets them.
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, cur in zip(_tensors(self.model), _tensors(model)):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1.0 - decay)
            else:
                avg.copy_(cur)

    def state_dict(self) -> dict:
        """{"model": ..., "encoder": the companion's} (the checkpoints' format)."""
        mods = _modules(self.model)
        return {"model": mods[0].state_dict(),
                **({"encoder": mods[1].state_dict()} if len(mods) > 1 else {})}

    def load_state_dict(self, state: dict) -> None:
        mods = _modules(self.model)
        mods[0].load_state_dict(state["model"])
        if len(mods) > 1:
            mods[1].load_state_dict(state["encoder"])
