"""`avedge export` and `avedge info` say what parity was measured against, and show the
recipe's own deviation from the uncompressed model when the manifest records one (they
used to print "parity vs eager" whatever the recipe had done to the module)."""

from __future__ import annotations

import json
import textwrap

import pytest

from avedge.cli import main

FACTORY = textwrap.dedent('''
    import torch

    class Proj(torch.nn.Module):
        input_names = ("x",)
        output_names = ("y",)

        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.a = torch.nn.Linear(64, 16)
            with torch.no_grad():
                self.a.weight.copy_(torch.randn(16, 64, generator=g) / 8)

        def forward(self, x):
            return self.a(x)

    def factory():
        return Proj().eval(), (torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(1)),)
''')


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder holding the user model `labels_model:factory`, importable while in use."""
    root = tmp_path_factory.mktemp("labels")
    (root / "labels_model.py").write_text(FACTORY)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root))
    yield root
    mp.undo()


def _export(capsys, root, recipe) -> str:
    assert main(["export", "labels_model:factory", "--target", "cpu", "--recipe", recipe,
                 "--out", str(root / recipe)]) == 0
    return capsys.readouterr().out


def test_export_and_info_name_the_compressed_module_and_show_the_deviation(root, capsys):
    printed = _export(capsys, root, "lowrank-0.5")
    manifest = json.loads((root / "lowrank-0.5" / "manifest.json").read_text())
    dev = manifest["recipe_deviation"]["rel_err"]
    assert dev > 0
    assert "parity vs the compressed eager module (max abs err): pte: " in printed
    assert "vs eager (" not in printed
    assert (f"recipe deviation from the uncompressed model: relative error {dev:.2e}"
            in printed), printed

    assert main(["info", str(root / "lowrank-0.5")]) == 0
    info = capsys.readouterr().out
    assert "parity onnx on onnxruntime vs the compressed eager module: max abs err" in info
    assert f"recipe deviation from the uncompressed model: relative error {dev:.2e}" in info


def test_without_module_compression_parity_is_against_the_module_and_no_deviation(root, capsys):
    printed = _export(capsys, root, "fp32")
    assert "parity vs the eager module (max abs err)" in printed
    assert "recipe deviation" not in printed
    assert main(["info", str(root / "fp32")]) == 0
    info = capsys.readouterr().out
    assert "parity pte on executorch vs the eager module: max abs err" in info
    assert "recipe deviation" not in info
