"""The runtime runs artifacts with numpy + a native runtime: no training stack."""

import json
import os
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


# What a runtime-only install lacks: a module set to None in sys.modules cannot be imported
# (importlib.util.find_spec answers None for it, as for a package that is not installed).
NOT_INSTALLED = ("torch", "torchao", "executorch", "onnx", "onnxscript", "safetensors")
EXPORT_LAYERS = ("avedge.models", "avedge.quantize", "avedge.targets")


def run_cli_without(blocked) -> str:
    """`python -m avedge ARGS` with `blocked` modules unimportable."""
    return ("import runpy, sys\n"
            f"for name in {tuple(blocked)!r}:\n"
            "    sys.modules[name] = None\n"
            "sys.argv = ['avedge', *sys.argv[1:]]\n"
            "runpy.run_module('avedge', run_name='__main__')\n")


def onnx_only_copy(src, dst):
    """The artifact with every .pte dropped and onnxruntime as the only backend, each
    manifest rewritten through the schema (the pipeline lists the components' new hashes)."""
    from avedge.runtime.manifest import (
        MANIFEST_NAME,
        ModelManifest,
        PipelineManifest,
        file_record,
        open_manifest,
        write_manifest,
    )

    shutil.copytree(src, dst)
    top = open_manifest(dst)
    files = {}
    for comp in top.components.values():
        d = dst / comp.dir
        m = open_manifest(d).to_json()
        for name in [n for n, rec in m["files"].items() if rec["format"] == "pte"]:
            (d / name).unlink()
            del m["files"][name]
            del m["parity"]["pte"]
        write_manifest(d, ModelManifest.new(**{**m, "backends": ["onnxruntime"]}))
        files[f"{comp.dir}/{MANIFEST_NAME}"] = file_record(d / MANIFEST_NAME, "manifest")
    write_manifest(dst, PipelineManifest.new(**{**top.to_json(), "files": files,
                                                "backends": ["onnxruntime"]}))
    return dst


def test_runtime_commands_run_without_torch_on_an_onnx_artifact(tiny_extractor, tmp_path):
    import numpy as np
    import soundfile as sf

    art = onnx_only_copy(tiny_extractor[1], tmp_path / "onnx-art")
    rng = np.random.default_rng(0)
    enroll, mix, out = tmp_path / "e.wav", tmp_path / "m.wav", tmp_path / "o.wav"
    sf.write(enroll, (rng.standard_normal(32000) * 0.1).astype(np.float32), 16000)
    sf.write(mix, (rng.standard_normal(12000) * 0.1).astype(np.float32), 16000)

    def cli(*args, blocked=NOT_INSTALLED + EXPORT_LAYERS, **kw):
        return subprocess.run([sys.executable, "-c", run_cli_without(blocked),
                               *map(str, args)], capture_output=True, text=True, check=False,
                              timeout=300, **kw)

    r = cli("extract", "--enroll", enroll, "--input", mix, "--out", out, "--artifact", art,
            "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["chunks"] > 0 and sf.info(out).frames == 12000
    r = cli("info", art)
    assert r.returncode == 0 and "files verified" in r.stdout, r.stderr
    r = cli("bench", art, "--runs", "3", "--warmup", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert {row["backend"] for row in json.loads(r.stdout)} == {"onnxruntime"}
    # The blocking itself works: where only the runtime is installed, export needs torch
    # and says which extra has it.
    r = cli("export", "speech-extractor", "--target", "cpu", "--out", tmp_path / "x",
            blocked=NOT_INSTALLED)
    assert r.returncode == 2 and "pip install 'avedge[export]'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    # listen: the sound card is ALSA's null device, the microphone a file (as in
    # test_extraction.py); skipped where PortAudio or ALSA is missing.
    from pathlib import Path

    alsa = Path("/usr/share/alsa/alsa.conf")
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        return
    if not alsa.exists():
        return
    conf = tmp_path / "asound.conf"
    conf.write_text(f"<{alsa}>\npcm.!default {{ type null }}\n")
    r = cli("listen", "--enroll", enroll, "--artifact", art, "--from-file", mix, "--json",
            env={**os.environ, "ALSA_CONFIG_PATH": str(conf)})
    if r.returncode == 2 and "cannot open the audio device" in r.stderr:
        return
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout[r.stdout.index("{"):])["blocks"] > 0
