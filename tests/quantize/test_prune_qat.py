"""Structured pruning and quantization-aware training (quantize/prune.py, quantize/qat.py)."""

import pytest
import torch
from avedge.quantize.prune import prune_hidden, unit_importance
from avedge.runtime.errors import AvedgeError
from avedge.targets.arm.lower import arm_toolchain_missing
from torch import nn

MISSING = arm_toolchain_missing()
needs_arm = pytest.mark.skipif(MISSING is not None, reason=f"Ethos-U toolchain: {MISSING}")


def test_pruning_drops_the_units_that_carry_nothing():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
    with torch.no_grad():
        fc2.weight[:, [1, 4, 6]] = 0  # these units never reach the output
    x = torch.randn(20, 6)
    imp = unit_importance(torch.relu(fc1(x)), fc2)
    assert set(torch.topk(-imp, 3).indices.tolist()) == {1, 4, 6}
    p1, p2 = prune_hidden(fc1, fc2, imp, 5)
    assert (p1.out_features, p2.in_features) == (5, 5)
    torch.testing.assert_close(p2(torch.relu(p1(x))), fc2(torch.relu(fc1(x))))
    q1, q2 = prune_hidden(fc1, fc2, imp, 3)  # cutting live units changes the output
    assert not torch.allclose(q2(torch.relu(q1(x))), fc2(torch.relu(fc1(x))), atol=1e-3)


def test_pruning_refuses_a_width_it_cannot_keep():
    fc1, fc2 = nn.Linear(4, 8), nn.Linear(8, 2)
    with pytest.raises(ValueError, match="width must be in 1..8"):
        prune_hidden(fc1, fc2, torch.ones(8), 9)
    with pytest.raises(ValueError, match="importance has shape"):
        prune_hidden(fc1, fc2, torch.ones(7), 4)


class LogFeatures(nn.Module):
    """Log-power features -> LayerNorm -> MLP, with an indexed weight (like a conv tap)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.proj = nn.Linear(16, 16)
        self.taps = nn.Parameter(torch.randn(2, 16) * 0.5)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):  # (B, T, 16)
        h = self.proj(torch.log(x * x + 1e-6))
        h = nn.functional.layer_norm(h * self.taps[0] + self.taps[1], (16,))
        return self.fc(h)


@needs_arm
def test_qat_trains_the_module_weights_through_the_npu_quantizer():
    from avedge.quantize.qat import QatGraph
    from avedge.targets import get_target
    from avedge.targets.arm.lower import ethos_u_spec
    from avedge.targets.arm.precision import ethos_u_quantizer

    model = LogFeatures()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 12, 16, generator=gen) * 0.3
    x[0] = 0  # silence: the log's and the LayerNorm's singular points after quantization
    target = torch.randn(4, 12, 4, generator=gen)
    quantizer = ethos_u_quantizer(ethos_u_spec(get_target("hearable-npu")), "a8w8-log16",
                                  qat=True)
    qat = QatGraph(model, (x,), quantizer)
    # Every trainable module tensor is reached, including the taps folded into constants.
    assert {name for name, _ in qat.sources.values()} == {n for n, _ in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(qat.trainable(), lr=1e-2)
    losses = []
    for _ in range(30):
        y = qat(x)
        assert torch.isfinite(y).all()
        loss = ((y - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    qat.write_back()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())
    graph_params = dict(qat.graph.named_parameters())
    module_params = dict(model.named_parameters())
    for gname, (mname, row) in qat.sources.items():
        got = module_params[mname] if row is None else module_params[mname][row]
        assert torch.equal(got, graph_params[gname])
    # The int16 log is trained as the NPU's interpolated table, not the exact log.
    assert any(getattr(n.target, "__name__", "") == "int16_table_log"
               for n in qat.graph.graph.nodes)


@needs_arm
def test_qat_refuses_a_model_whose_weights_it_cannot_map_back(monkeypatch):
    from avedge.quantize import qat as qat_mod
    from avedge.targets import get_target
    from avedge.targets.arm.lower import ethos_u_spec
    from avedge.targets.arm.precision import ethos_u_quantizer

    monkeypatch.setattr(qat_mod, "_constants_as_parameters", lambda graph, module: None)
    quantizer = ethos_u_quantizer(ethos_u_spec(get_target("hearable-npu")), "a8w8", qat=True)
    with pytest.raises(AvedgeError, match="would not train them: \\['taps'\\]"):
        qat_mod.QatGraph(LogFeatures(), (torch.randn(2, 4, 16),), quantizer)
