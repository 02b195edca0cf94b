"""Shared fixtures: reference artifacts are exported once per test session."""

from __future__ import annotations

import warnings

import pytest

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
