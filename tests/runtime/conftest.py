"""Runtime fixtures: a tiny speech-extractor artifact, exported once per test session."""

import pytest


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory):
    """(model, artifact dir): a tiny random extractor through the family's export plan for
    `cpu` (speaker encoder + streaming extractor, each as .pte and .onnx)."""
    import torch
    from avedge.models.speech_extractor import model as se

    from avedge.api import export

    torch.manual_seed(0)
    dims = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2,
                   speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))
    model = se.Extractor(dims).eval()
    torch.nn.init.normal_(model.film.weight, std=0.5)
    out = tmp_path_factory.mktemp("art") / "se-cpu"
    export(model, "cpu", out, example_inputs=se.example_inputs(model), family=se.NAME,
           measure=False)
    return model, out
