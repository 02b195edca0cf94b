"""tools/gpu_train.sh end to end on the CPU at a tiny size: a packed bank, a Python that
cannot import what a GPU machine lacks, weights + record back in OUT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from avedge.models.corpus import packed
from avedge.models.corpus.voices import small_bank_voices
from avedge.models.speech_extractor import model as se

ROOT = Path(__file__).resolve().parents[2]
# What the GPU image lacks (pyroomacoustics: the rooms come packed), plus tqdm, optional.
ABSENT = ("executorch", "torchao", "pyroomacoustics", "soundfile", "tqdm")
BLOCKER = f"""
import importlib.abc, importlib.machinery, sys
class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Found (torch probes with find_spec) but not importable, as a missing package.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {ABSENT!r}:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (test)", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, _Absent())
"""


def tone_bank(root: Path, n_utts: int = 3) -> Path:
    """A bank in the voice bank's layout whose 'voices' are harmonic tones (no synthesizer)."""
    vdir = root / "voices"
    vdir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, vid in enumerate(["piper:joe"] + small_bank_voices()):
        chunks, utts, offset = [], [], 0
        for i in range(n_utts):
            n = 16000 + 800 * i
            t = np.arange(n) / 16000
            x = sum(np.sin(2 * np.pi * (100 + 25 * k) * h * t) / h for h in range(1, 6))
            x = x * (rng.random(n // 1600 + 1) > 0.3).repeat(1600)[:n] * 0.2
            chunks.append(np.round(x * 32767).astype(np.int16))
            utts.append({"text": f"u{i}", "kind": "free", "offset": offset, "n": n,
                         "phones": [], "words": []})
            offset += n
        slug = vid.replace(":", "_").replace("+", "_").replace("@", "_")
        np.save(vdir / f"{slug}.npy", np.concatenate(chunks))
        (vdir / f"{slug}.json").write_text(json.dumps(
            {"voice": vid, "synth": vid.partition(":")[0], "seed": 0, "utterances": utts}))
    (root / "bank.json").write_text(json.dumps({"seed": 0, "synths": {}}))
    return root


def test_mulaw_round_trip_keeps_speech_levels():
    x = (np.sin(np.linspace(0, 200, 4000)) * np.linspace(0, 20000, 4000)).astype(np.int16)
    y = packed.mulaw_decode(packed.mulaw_encode(x)).astype(np.float64)
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x) ** 2))
    assert snr > 30


def test_pack_caps_utterances_to_the_budget_and_unpacks_to_a_bank(tmp_path):
    from avedge.models.corpus.voicebank import open_bank

    bank = tone_bank(tmp_path / "bank", n_utts=6)
    rooms = packed.pack_bank(bank, tmp_path / "p.npz", max_mib=64)["rir_mib"]
    # 8 voices x 3 utterances of ~1 s at one byte a sample: 0.38 MiB, 4 of them 0.51
    res = packed.pack_bank(bank, tmp_path / "p.npz", max_mib=rooms + 1 + 0.45)
    assert res["utterances_per_voice"] == 3
    out = packed.unpack_bank(tmp_path / "p.npz", tmp_path / "un")
    again = open_bank(out["bank"])
    assert len(again.by_voice) == 8
    assert {len(u) for u in again.by_voice.values()} == {res["utterances_per_voice"]}
    src, dst = open_bank(bank), again
    u = src.by_voice["piper:joe"][1]
    np.testing.assert_allclose(dst.audio(dst.by_voice["piper:joe"][1]), src.audio(u), atol=0.01)
    with pytest.raises(Exception, match="do not fit"):
        packed.pack_bank(bank, tmp_path / "q.npz", max_mib=0.5)


def test_gpu_train_script_runs_on_the_cpu_without_what_the_gpu_lacks(tmp_path):
    pack = tmp_path / "bank.npz"
    packed.pack_bank(tone_bank(tmp_path / "bank"), pack, max_mib=4)
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "block"), "PYTHON": sys.executable,
           "OUT": str(out), "PACK": str(pack), "MINUTES": "2", "DEVICE": "cpu",
           "WORKERS": "2", "THREADS": "1", "AVEDGE_VOICEBANK": str(tmp_path / "none")}
    run = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_train.sh"), "speech-extractor", "--",
         "--steps", "2", "--batch", "2", "--seconds", "1", "--eval-every", "2",
         "--eval-n", "2", "--holdout-synth", "none", "--ema", "0"],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "speech_extractor_df.json", "speech_extractor_df.safetensors", "train.log"]
    rec = json.loads((out / "speech_extractor_df.json").read_text())
    assert rec["steps"] == 2 and rec["warm_start"]["from"] == "speech_extractor_df.safetensors"
    assert rec["config"]["workers"] == 2 and rec["config"]["device"] == "cpu"
    assert len(rec["history"]) == 1
    model = se.load_weights(out / "speech_extractor_df.safetensors")
    assert model.dims == se.load_weights(se.WEIGHTS_FILE).dims
