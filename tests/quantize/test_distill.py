"""Distillation after compression (quantize/distill.py): the teacher is the module before
the recipe's module-level configs; the fine-tune lowers the error against it."""

import copy
import json

import pytest
import torch
from avedge.quantize import Recipe, apply_recipe, config_from_json, config_to_json, quantize_
from avedge.quantize.api import recipe_context, using
from avedge.quantize.distill import DistillConfig, distill, output_mse
from avedge.quantize.low_rank import LowRankConfig
from avedge.runtime.errors import AvedgeError
from torch import nn


class Tiny(nn.Module):
    """Two MLP layers with an attention-named projection; outputs a tensor and a state."""

    def __init__(self, d=32, hidden=96):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.attn_q = nn.Linear(d, d)
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

    def forward(self, x):
        h = x + self.attn_q(x)
        y = h + self.fc2(self.act(self.fc1(h)))
        return y, y.mean(1)


def example():
    return (torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(3)),)


def error(student, teacher, inputs) -> float:
    with torch.no_grad():
        return float(sum(output_mse(student(*b), teacher(*b)) for b in inputs))


def test_config_round_trips_and_refuses_bad_values():
    c = DistillConfig(steps=50, lr=3e-3, batches=4)
    assert config_from_json(json.loads(json.dumps(config_to_json(c)))) == c
    for bad in ({"steps": 0}, {"lr": 0}, {"lr": 2.0}, {"batches": True}):
        with pytest.raises(ValueError):
            DistillConfig(**bad)


def test_distillation_lowers_the_error_of_low_rank_at_a_quarter():
    teacher = Tiny().eval()
    low = apply_recipe(teacher, Recipe("low", (LowRankConfig(rank_ratio=0.25),)), example())
    tuned = apply_recipe(teacher, Recipe("low+d", (LowRankConfig(rank_ratio=0.25),
                                                   DistillConfig(steps=300, lr=3e-3))),
                         example())
    assert isinstance(tuned.fc1, nn.Sequential) and tuned.fc1[0].out_features == 8
    seen = [example()]  # the inputs the fine-tune saw include the example
    held_out = [(torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(k)) * 2,)
                for k in range(10, 14)]
    before, after = error(low, teacher, seen), error(tuned, teacher, seen)
    unseen_before, unseen_after = error(low, teacher, held_out), error(tuned, teacher, held_out)
    print(f"low-rank 0.25 relative output MSE vs teacher: {before:.4f} -> {after:.4f} "
          f"(held out {unseen_before:.4f} -> {unseen_after:.4f})")
    assert after < before and unseen_after < unseen_before
    assert sum(p.numel() for p in tuned.parameters()) == sum(
        p.numel() for p in low.parameters())  # distillation changes weights, not structure


def test_the_teacher_is_the_callers_module_and_stays_untouched():
    teacher = Tiny().eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen = []

    from dataclasses import dataclass

    from avedge.quantize.api import register_handler

    @dataclass(frozen=True)
    class SpyConfig:
        pass

    @register_handler(SpyConfig)
    def spy(model, config):
        seen.append(recipe_context())

    apply_recipe(teacher, Recipe("x", (LowRankConfig(rank_ratio=0.25), SpyConfig(),
                                       DistillConfig(steps=5))), example())
    assert seen[0].original is teacher and torch.equal(seen[0].example_inputs[0], example()[0])
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in teacher.parameters())
    assert recipe_context().original is None  # gone once the recipe is applied


def test_distill_needs_a_teacher_and_keeps_the_start_when_it_only_got_worse():
    with pytest.raises(AvedgeError, match="needs the uncompressed model as its teacher"):
        quantize_(Tiny(), DistillConfig())
    with using(Tiny()), pytest.raises(AvedgeError, match="needs inputs.*example_inputs"):
        quantize_(Tiny(), DistillConfig())
    teacher = Tiny().eval()
    student = quantize_(copy.deepcopy(teacher), LowRankConfig(rank_ratio=0.25))
    start = copy.deepcopy(student.state_dict())
    losses = distill(student, teacher, [example()], steps=3, lr=0.9)  # diverges
    assert losses[1] == losses[0]
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in start.items())
