"""The layering (docs/DESIGN.md, "Layering") as an allowed-edges table, checked on the source.

Every .py file of the packages is read with `ast`; each import of an avedge package —
at module level or inside a function, absolute or relative, or `importlib.import_module`
with a literal name — is an edge from the file's layer to the imported one, and must be
in ALLOWED. Top to bottom:

    avedge (CLI, api.py)   may use everything
    targets                quantize, runtime, cpp_kernels
    models                 runtime, cpp_kernels; training code (models/<family>/train*.py
                           and the shared loop, models/common/trainer.py) may also use
                           quantize and targets, as tools
    quantize               runtime (its errors), cpp_kernels
    runtime                cpp_kernels (an artifact's custom ops load their kernels, lazily)
    cpp_kernels            nothing of ours
"""

import ast
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("avedge", "runtime", "quantize", "targets", "models", "cpp_kernels")

ALLOWED = {
    "avedge": set(LAYERS),
    "targets": {"targets", "quantize", "runtime", "cpp_kernels"},
    "models": {"models", "runtime", "cpp_kernels"},
    "quantize": {"quantize", "runtime", "cpp_kernels"},
    "runtime": {"runtime", "cpp_kernels"},
    "cpp_kernels": {"cpp_kernels"},
}
# Files (glob, relative to the repository) that may use more than their layer: the tools.
TOOLS = {"models/*/train*.py": {"quantize", "targets"}}


def _module_name(path: Path, root: Path) -> list[str]:
    """models/speech_extractor/npu.py -> ["avedge", "models", "speech_extractor", "npu"]."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] != "avedge":
        parts.insert(0, "avedge")
    return parts[:-1] if parts[-1] == "__init__" else parts


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "avedge":
        return None  # not ours
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS[1:] else "avedge"


def _imports(path: Path, root: Path = ROOT):
    """-> [(line, imported module)] for every import in the file."""
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package[:len(package) - node.level + 1]
                found.append((node.lineno, ".".join(base + [node.module] if node.module
                                                    else base)))
            else:
                found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def _allowed(path: Path, layer: str, root: Path = ROOT) -> set:
    rel = path.relative_to(root).as_posix()
    extra = set().union(*(more for pattern, more in TOOLS.items() if fnmatch(rel, pattern)))
    return ALLOWED[layer] | extra


def test_every_import_follows_the_layering():
    broken, scanned = [], 0
    for layer in LAYERS:
        files = sorted((ROOT / layer).rglob("*.py"))
        assert files, f"no .py files under {layer}/"
        for path in files:
            scanned += 1
            allowed = _allowed(path, layer)
            for line, module in _imports(path):
                to = _layer(module)
                if to is not None and to not in allowed:
                    broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}: {layer} "
                                  f"may use only {', '.join(sorted(allowed))}")
    assert scanned > 50
    assert not broken, "imports that break the layering:\n" + "\n".join(broken)


def test_the_check_sees_function_level_relative_and_dynamic_imports(tmp_path):
    """A layering test that finds nothing would pass too: feed it each kind of edge."""
    fake = tmp_path / "runtime" / "backends" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import importlib\n"
                    "def f():\n"
                    "    from avedge.models import registry\n"
                    "    from ...targets import export\n"
                    "    importlib.import_module('avedge.quantize.qat')\n"
                    "from ..errors import AvedgeError\n")
    got = sorted((line, mod, _layer(mod)) for line, mod in _imports(fake, tmp_path))
    assert got == [(1, "importlib", None), (3, "avedge.models", "models"),
                   (4, "avedge.targets", "targets"), (5, "avedge.quantize.qat", "quantize"),
                   (6, "avedge.runtime.errors", "runtime")]
    assert {"models", "targets", "quantize"}.isdisjoint(_allowed(fake, "runtime", tmp_path))


def test_training_code_may_use_quantize_and_targets_nothing_else_in_models_may():
    train = ROOT / "models" / "speech_extractor" / "train_npu.py"
    model = ROOT / "models" / "speech_extractor" / "model.py"
    assert {"quantize", "targets"} <= _allowed(train, "models")
    assert {"quantize", "targets"}.isdisjoint(_allowed(model, "models"))
