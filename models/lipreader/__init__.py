"""The lip-reader family: video, audio or both -> characters, token rate chosen at run time.

Files: model.py (the network and its weights I/O), tokenizer.py (characters <-> CTC
labels), lexicon.py (the corpus word list shipped with the artifact), data.py and
train.py (the trainer), evaluate.py (the metric on an artifact / eager module), weights/ (the shipped safetensors with the record of its run).

An artifact holds one graph per token rate ("rate1", "rate2", "rate4"), each taking a
fixed window of model.WINDOW frames; the manifest's extra carries what the runtime needs
to feed and decode them without importing models/ (vocabulary, separator, frame and
sample rates, ROI size and normalisation, window, lexicon).
"""

from __future__ import annotations

from avedge.models.lipreader.model import (
    FPS,
    HOP_SAMPLES,
    NAME,
    OUTPUTS_PER_FRAME,
    RATES,
    ROI,
    ROI_MEAN,
    ROI_STD,
    SAMPLE_RATE,
    WEIGHTS_FILE,
    WINDOW,
    AllRates,
    AtRate,
    Dims,
    LipReader,
    build,
    example_inputs,
)
from avedge.models.registry import Component, Family, TargetFacts

__all__ = ["FAMILY", "AllRates", "AtRate", "Dims", "LipReader", "build", "example_inputs"]


def component_name(rate: int) -> str:
    return f"rate{rate}"


def export_plan(module: LipReader, facts: TargetFacts) -> list[Component]:
    """One graph per token rate, all sharing the weights (each file holds its own copy:
    a device that only needs one rate can drop the others). Static int8 calibrates on
    the bank's train-split ROI cache where there is one (calibration.py)."""
    from avedge.models.lipreader.calibration import attach

    ex = example_inputs(module)
    return [Component(component_name(r), attach(AtRate(module, r)), ex) for r in RATES]


def compression_view(module: LipReader):
    """Every rate on the shared features (AllRates), with the train-split calibration
    inputs: what a recipe for all the rate graphs is applied to, once."""
    from avedge.models.lipreader.calibration import attach

    return attach(AllRates(module))


def manifest_extra() -> dict:
    from avedge.models.lipreader.lexicon import corpus_grammar, corpus_lexicon
    from avedge.models.lipreader.tokenizer import SEPARATOR, VOCAB

    return {"task": "lipread", "vocab": list(VOCAB), "separator": SEPARATOR,
            "fps": FPS, "output_fps": FPS * OUTPUTS_PER_FRAME,
            "sample_rate": SAMPLE_RATE, "hop_samples": HOP_SAMPLES,
            "window": WINDOW, "rates": {str(r): component_name(r) for r in RATES},
            "roi": ROI, "roi_mean": ROI_MEAN, "roi_std": ROI_STD,
            "lexicon": corpus_lexicon(), "grammar": corpus_grammar()}


def measure(artifact_dir, n: int = 8, backend: str | None = None) -> dict:
    """Video-only WER (%) of an artifact through the runtime on n val utterances
    (evaluate.py). "component" names the graph it is of (a sweep times that graph)."""
    from avedge.models.lipreader.evaluate import RATE
    from avedge.models.lipreader.evaluate import measure as measure_artifact

    return {**measure_artifact(artifact_dir, n=n, backend=backend),
            "component": component_name(RATE)}


def score_module(module, n: int = 8) -> dict:
    """The same WER on the eager module."""
    from avedge.models.lipreader.evaluate import score_module as score

    return score(module, n)


FAMILY = Family(
    name=NAME,
    summary="lip reading / speech recognition: video, audio or both; token rate 1, 2 or 4",
    build=build,
    example_inputs=example_inputs,
    dims=Dims,
    weights={"default": WEIGHTS_FILE},
    export_plan=export_plan,
    compression_view=compression_view,
    manifest_extra=manifest_extra,
    metric="wer",
    measure=measure,
    score_module=score_module,
    trainers={"lipreader": "avedge.models.lipreader.train"},
)
