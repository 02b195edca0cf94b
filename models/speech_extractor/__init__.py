"""The speech-extractor family: model, speaker encoder, NPU form, trainers and weights.

Files: model.py (the extractor), speaker_encoder.py (enrollment -> embedding), npu.py
(the same function shaped for an Ethos-U NPU), train.py / train_npu.py (its trainers),
weights/ (the shipped safetensors, each with the record of how it was made).
"""

from __future__ import annotations

from avedge.models.registry import Component, Family, TargetFacts
from avedge.models.speech_extractor.model import *
from avedge.models.speech_extractor.model import (
    CALIB_FILE,  # noqa: F401
    MASK_WEIGHTS_FILE,
    NAME,
    NPU_WEIGHTS_FILE,
    WEIGHTS_FILE,
    Dims,
    build,
    example_inputs,
    export_extra,
)

# On an NPU target the enrollment encoder runs on the paired phone (host CPU, fp32): its
# 5 s clip needs ~3.5 MiB of activations (Vela), 7x an earbud's SRAM, and it runs once;
# the phone sends the earbud the FiLM vector (2 * blocks * d_model values).
NPU_COMPONENT_TARGETS = {"speaker_encoder": "cpu"}


def weights_for(facts: TargetFacts) -> tuple[str, ...]:
    """A microcontroller board (an NPU, or CMSIS-NN on a Cortex-M) runs the NPU form
    (export_plan), which needs plain-mask weights: the ones fitted to that form (pruned +
    quantization-aware fine-tuned) when they ship, else the plain-mask float weights (the
    default float model deep-filters, which the form refuses); every other target the
    default."""
    return ("npu", "mask") if facts.microcontroller else ()


def export_plan(module, facts: TargetFacts) -> list[Component]:
    """Two graphs: the run-once speaker encoder and the per-chunk extractor.

    The encoder stays fp32 (it runs once per enrollment). On int8 targets the extractor
    takes dynamic int8 (measured: SI-SDRi unchanged, 0.20 ms/chunk .pte). Static int8 on
    the weighted ops (`int8-static`) now costs 0.1 dB too (session 13, RESULTS.md "Static
    int8 of the speech extractor"); dynamic stays the plan: no calibration set to ship, and
    it was as fast here. A microcontroller board gets the
    NPU form (same function, graphs shaped for batch-1 integer hardware) in the board's
    own integer recipe, the encoder on the paired phone.
    """
    from avedge.models.speech_extractor.model import components, npu_components

    if facts.microcontroller:
        return [Component(name, mod, ex, target=NPU_COMPONENT_TARGETS.get(name),
                          calibration="module")
                for name, (mod, ex) in npu_components(module).items()]
    graphs = components(module)
    enc, ext = graphs["speaker_encoder"], graphs["extractor"]
    # The user's --recipe is for the per-chunk extractor (what a hearable runs 125 times a
    # second): the encoder runs once per enrollment, and int8-static on it, calibrated on
    # noise, turned its unit embedding 0.36 off (relative error 1.47).
    return [Component("speaker_encoder", *enc, recipe="fp32", takes_user_recipe=False),
            Component("extractor", *ext, recipe="int8" if facts.precision == "int8" else None,
                      calibration="module")]


def measure(artifact_dir, n: int = 4, backend: str | None = None) -> dict:
    """SI-SDRi of an exported artifact on n val mixtures, through the runtime (evaluate.py)."""
    from avedge.models.speech_extractor.evaluate import measure as measure_artifact

    return measure_artifact(artifact_dir, n=n, backend=backend)


def score_module(module, n: int = 4) -> dict:
    """SI-SDRi of the eager module on the first n of the val mixtures measure() uses."""
    from avedge.models.speech_extractor.evaluate import score_module as score

    return score(module, n)


def eval_set(name: str, n: int, data_dir=None) -> list[dict]:
    """n mixtures of a named eval set from the voice bank at data_dir (default bank)."""
    from avedge.models.speech_extractor.evaluate import eval_set as draw

    return draw(name, n, data_dir)


def write_calibration_set(corpus, n: int = 12) -> dict:
    """CALIB_FILE from n val-split mixtures of `corpus` (train.py)."""
    from avedge.models.speech_extractor.train import write_calibration_set as write

    return write(corpus, n=n)


FAMILY = Family(
    name=NAME,
    summary="target speech extraction for hearables: 8 ms chunks, enrolled speaker",
    build=build,
    example_inputs=example_inputs,
    dims=Dims,
    weights={"default": WEIGHTS_FILE, "mask": MASK_WEIGHTS_FILE, "npu": NPU_WEIGHTS_FILE},
    weights_for=weights_for,
    export_plan=export_plan,
    manifest_extra=export_extra,
    metric="si_sdri_db",
    measure=measure,
    score_module=score_module,
    # Kept in step with evaluate.EVAL_SETS (tests/test_api.py checks).
    eval_sets=("val", "heldout_voices", "heldout_voices_noise_only"),
    eval_set=eval_set,
    write_calibration_set=write_calibration_set,
    trainers={
        "speech-extractor": "avedge.models.speech_extractor.train",
        # The extractor fitted to an NPU (pruned + quantization-aware fine-tuning).
        "speech-extractor-npu": "avedge.models.speech_extractor.train_npu",
    },
)
