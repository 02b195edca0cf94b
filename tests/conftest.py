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


def pytest_configure(config):
    # Under pytest-xdist each worker gets one intra-op thread: two workers on two cores
    # would otherwise run four threads and slow each other down. Tests that time or compare
    # thread counts set their own.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # Workers take a file at a time: a file holding a minutes-long test (the demo) picked
    # last would run alone at the end. Start those files first (a stable sort keeps every
    # file's tests together and in order).
    heavy = {item.path for item in items if item.get_closest_marker("minutes")}
    items.sort(key=lambda item: item.path not in heavy)
