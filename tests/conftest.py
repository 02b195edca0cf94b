"""Shared fixtures: reference artifacts are exported once per test session."""

from __future__ import annotations

import warnings

import pytest
import torch

warnings.filterwarnings("ignore")


@pytest.fixture(scope="session")
def tiny_model():
    from avedge.models.tiny_stream import build, example_inputs

    model = build()
    return model, example_inputs(model)


@pytest.fixture(scope="session")
def cpu_artifact(tmp_path_factory, tiny_model):
    from avedge.targets import get_target

    model, example = tiny_model
    return get_target("cpu").export(model, example, tmp_path_factory.mktemp("art") / "tiny-cpu")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    """A tiny speech extractor's weights file (untrained: for paths, not quality)."""
    from avedge.models.speech_extractor import model as se

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    se.save_weights(se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2)), path)
    return str(path)


@pytest.fixture(scope="module")
def val_bank(tmp_path_factory):
    """Two espeak val-split voices (~1 s to build): enough for the val eval set."""
    from avedge.models.corpus import voicebank
    from avedge.models.corpus.voices import small_bank_voices

    d = tmp_path_factory.mktemp("bank")
    voicebank.build_bank(d, voices=small_bank_voices({"val": 2}), n_per_voice={"espeak": 2},
                         seed=0)
    return d
