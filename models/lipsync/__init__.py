"""The lips-pose family (stage 2 of lip-sync): audio -> 12-dim lips-pose at 25 fps.

Files: pose_flow.py (the flow-matching transformer, audio and motion streams in joint
attention, and its weights I/O), sampler.py (the few-step sampler unrolled around it:
the exported graph), data.py and train.py (the trainer), evaluate.py (pose error, sync
offset, silence check; the family metric on an artifact / eager module), weights/ (the
shipped safetensors with the record of its run).

An artifact holds one graph, "pose": audio (1, W*640) and noise (1, W, 12) -> pose
(1, W, 12) in [0, 1], W = WINDOW_FRAMES; the manifest's extra carries what the runtime
(runtime/pipelines/lipsync.py) needs to feed it and to stream overlapping windows.
"""

from __future__ import annotations

import torch
from avedge.models.corpus.visemes import DIMS, REST
from avedge.models.lipsync.pose_flow import (
    FPS,
    HOP_SAMPLES,
    NAME,
    SAMPLE_RATE,
    WEIGHTS_FILE,
    WINDOW_FRAMES,
    Dims,
    PoseFlow,
    load_weights,
)
from avedge.models.lipsync.sampler import GUIDANCE, METHOD, STEPS, PoseSampler
from avedge.models.registry import Component, Family, TargetFacts

__all__ = ["FAMILY", "Dims", "PoseFlow", "PoseSampler", "build", "example_inputs"]

COMPONENT = "pose"
# Frames at a window's right edge that are not yet reliable: their mouth shapes depend on
# audio that has not arrived. A live stream emits frames at least this many frames older
# than its newest audio. Measured on the shipped weights (evaluate.edge_profile, the
# record's eval.edge_profile, 200 val windows): pose MAE by distance from the right edge
# 0.030, 0.020, 0.015, 0.012, 0.010 (edge, 1, 2, 3, 4 frames in) against 0.0065 in the
# window's middle; 3 frames (120 ms) brings the emitted frames within 2x the middle and
# under the whole window's mean. The LEFT edge is as bad (0.029, 0.019, 0.013 for frames
# 0-2: no past audio): overlapping windows should not emit their first 3 frames either.
LOOKAHEAD_FRAMES = 3


def build(dims: Dims | None = None, weights: str | None = None) -> PoseSampler:
    """The exported module (the sampler around the network); with neither argument, the
    shipped weights when they exist."""
    if weights is None and dims is None and WEIGHTS_FILE.exists():
        weights = str(WEIGHTS_FILE)
    flow = load_weights(weights, dims) if weights is not None else PoseFlow(dims).eval()
    return PoseSampler(flow).eval()


def example_inputs(module: PoseSampler | None = None) -> tuple:
    """One window: speech-like noise bursts, then exact silence for the last 40 % (the
    parity check then covers silence, where a log of zero once gave NaN elsewhere)."""
    frames = module.flow.frames if module is not None else WINDOW_FRAMES
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, frames * HOP_SAMPLES, generator=g)
    audio[:, int(0.6 * frames) * HOP_SAMPLES:] = 0.0
    return audio, torch.randn(1, frames, len(DIMS), generator=g)


def export_plan(module: PoseSampler, facts: TargetFacts) -> list[Component]:
    """One graph, the sampler with every step unrolled and the avedge ops inside."""
    return [Component(COMPONENT, module, example_inputs(module))]


def manifest_extra() -> dict:
    return {"task": "lips-pose", "fps": FPS, "sample_rate": SAMPLE_RATE,
            "hop_samples": HOP_SAMPLES, "window_frames": WINDOW_FRAMES,
            "pose_dims": list(DIMS), "rest_pose": [round(float(x), 6) for x in REST],
            "steps": STEPS, "method": METHOD, "guidance": GUIDANCE,
            "lookahead_frames": LOOKAHEAD_FRAMES}


def measure(artifact_dir, n: int = 16, backend: str | None = None) -> dict:
    """Pose MAE of an artifact through the runtime on n val windows (evaluate.py)."""
    from avedge.models.lipsync.evaluate import measure as measure_artifact

    return {**measure_artifact(artifact_dir, n=n, backend=backend), "component": COMPONENT}


def score_module(module, n: int = 16) -> dict:
    """The same pose MAE on the eager module."""
    from avedge.models.lipsync.evaluate import score_module as score

    return score(module, n)


FAMILY = Family(
    name=NAME,
    summary="lip-sync stage 2: audio -> lips-pose at 25 fps (flow matching, joint attention, "
            f"{STEPS} {METHOD} steps unrolled)",
    build=build,
    example_inputs=example_inputs,
    dims=Dims,
    weights={"default": WEIGHTS_FILE},
    export_plan=export_plan,
    manifest_extra=manifest_extra,
    metric="pose_mae",
    measure=measure,
    score_module=score_module,
    trainers={"lips-pose": "avedge.models.lipsync.train"},
)
