"""The runtime runs artifacts with numpy + a native runtime: no training stack."""

import json
import shutil
import subprocess
import sys
import textwrap


def test_onnx_device_imports_neither_torch_nor_models(cpu_artifact, tmp_path):
    # An ONNX-only artifact whose target would prefer onnxruntime, then torch-cuda:
    # choosing the backend must not probe (import) torch once onnxruntime is there.
    art = tmp_path / "onnx-only"
    shutil.copytree(cpu_artifact.path, art)
    (art / "model.pte").unlink()
    m = json.loads((art / "manifest.json").read_text())
    del m["files"]["model.pte"]
    m["backends"] = ["onnxruntime", "torch-cuda"]
    (art / "manifest.json").write_text(json.dumps(m))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from avedge.runtime import load
        sess = load({str(art)!r})
        assert sess.backend == "onnxruntime", sess.backend
        stream = sess.stream()
        stream.accept(np.zeros(300, np.float32))
        stream.finish()
        bad = [m for m in sys.modules
               if m == "torch" or m.startswith(("avedge.models", "avedge.quantize",
                                                "avedge.targets"))]
        assert not bad, bad
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
