"""Structured pruning: drop whole hidden units of a Linear -> activation -> Linear MLP.

A batch-1 NPU streams every weight once per inference, so its time follows the weight
count; zeros inside a matrix do not shorten it (measured with Vela: 50 % unstructured
sparsity, same cycles), removing rows and columns does. Units are ranked by how much
they contribute on real inputs: mean |activation| times the norm of the weights that
carry it out. Fine-tune afterwards (quantize/qat.py) to win back what was cut.
"""

from __future__ import annotations

import torch
from torch import nn


def unit_importance(activations: torch.Tensor, fc2: nn.Linear) -> torch.Tensor:
    """activations (..., H) of the hidden layer on real inputs -> importance (H,)."""
    mean_abs = activations.detach().abs().reshape(-1, activations.shape[-1]).mean(0)
    return mean_abs * fc2.weight.detach().norm(dim=0)


def prune_hidden(fc1: nn.Linear, fc2: nn.Linear, importance: torch.Tensor,
                 width: int) -> tuple[nn.Linear, nn.Linear]:
    """Keep the `width` most important hidden units: -> (new fc1, new fc2)."""
    hidden = fc1.out_features
    if not 0 < width <= hidden:
        raise ValueError(f"width must be in 1..{hidden} (the current hidden size), got {width}")
    if importance.shape != (hidden,):
        raise ValueError(f"importance has shape {tuple(importance.shape)}, expected ({hidden},)")
    keep = torch.sort(torch.topk(importance, width).indices).values
    new1 = nn.Linear(fc1.in_features, width, bias=fc1.bias is not None)
    new2 = nn.Linear(width, fc2.out_features, bias=fc2.bias is not None)
    with torch.no_grad():
        new1.weight.copy_(fc1.weight[keep])
        if fc1.bias is not None:
            new1.bias.copy_(fc1.bias[keep])
        new2.weight.copy_(fc2.weight[:, keep])
        if fc2.bias is not None:
            new2.bias.copy_(fc2.bias)
    return new1, new2
