"""The streaming soak in small (issue #19, item 6; the hour is
benchmarks/bench_stream_soak.py): 20 s through `avedge listen`'s callback equal the file
path sample for sample, and nothing the stream carries grows with the time it runs."""

import tracemalloc

import numpy as np
import pytest
from avedge.runtime import stream as stream_mod
from avedge.runtime.pipelines import extraction as extraction_mod
from avedge.runtime.pipelines.extraction import DuplexProcessor, Extraction

SR = 16000
SECONDS = 20
KEPT = 64  # timings kept, small so that the bound is reached within a second of audio


def scene(seconds: float, seed: int = 0) -> np.ndarray:
    """Two harmonic 'talkers' switching on and off every 100 ms, in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in (140.0, 230.0):
        env = np.repeat(rng.random(len(t) // 1600 + 1) > 0.4, 1600)[: len(t)]
        x += env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    return (0.05 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def few_timings(monkeypatch):
    monkeypatch.setattr(stream_mod, "TIMINGS_KEPT", KEPT)
    monkeypatch.setattr(extraction_mod, "TIMINGS_KEPT", KEPT)


def carried(proc: DuplexProcessor) -> dict:
    """What the stream keeps between callbacks: model state, unread output, timings (fixed
    sizes), buffered input and listen's output FIFO (these cycle when the block is not a
    whole number of chunks)."""
    st = proc.stream
    return {**{k: v.shape for k, v in st._state.items()}, "out": len(st._out),
            "chunk_ms": len(st.chunk_ms), "compute_ms": len(proc.compute_ms),
            "buffered": st._buf.shape[-1], "fifo": len(proc._fifo)}


@pytest.mark.parametrize("backend,block", [("executorch", 128), ("onnxruntime", 128),
                                           ("onnxruntime", 100)])
def test_listen_callback_equals_file_path_and_carries_a_fixed_state(
        tiny_extractor, few_timings, backend, block):
    ex = Extraction.from_artifact(tiny_extractor[1], backend=backend, threads=1)
    emb = ex.enroll(scene(2.0, seed=1))
    mix = scene(SECONDS)
    filed = ex.process(mix, emb)  # what `avedge extract` runs
    n_chunks = -(-(len(mix) + ex.lookahead) // ex.chunk)
    assert filed.chunks == n_chunks  # file timings cover every chunk, more than KEPT
    assert np.abs(filed.samples).max() > 1e-3

    proc = DuplexProcessor(ex, emb, block)
    played, states = [], []
    for s in range(0, len(mix) - block + 1, block):
        played.append(proc.process(mix[s: s + block]))
        if s >= SR:  # after a second: state, buffers and timing windows at their size
            states.append(carried(proc))
    played = np.concatenate(played)
    lag = proc.latency_samples
    # Same chunks, same state, same graph, one thread: identical, not merely close.
    np.testing.assert_array_equal(played[lag:], filed.samples[: len(played) - lag])
    cycling = ("buffered", "fifo")
    fixed = [{k: v for k, v in s.items() if k not in cycling} for s in states]
    assert all(f == fixed[0] for f in fixed), "the stream's carried state changed size"
    assert fixed[0]["chunk_ms"] == KEPT and fixed[0]["compute_ms"] == KEPT
    assert fixed[0]["out"] == 0  # every chunk's output was handed on
    assert max(s["buffered"] for s in states) < ex.chunk
    assert max(s["fifo"] for s in states) <= lag
    if block == ex.chunk:  # whole chunks per callback: the same sizes after every one
        assert all(s == states[0] for s in states)
    assert proc.stream.chunks_run == len(played) // ex.chunk
    assert proc.blocks == len(mix) // block and proc.stats()["blocks"] == proc.blocks


def test_streaming_allocates_nothing_that_stays(tiny_extractor, few_timings):
    """Python-side memory held after 18 s more of streaming: the unbounded timing lists
    this replaces held ~64 bytes a chunk (~140 KB here); now nothing grows."""
    ex = Extraction.from_artifact(tiny_extractor[1], backend="onnxruntime", threads=1)
    proc = DuplexProcessor(ex, ex.enroll(scene(2.0, seed=1)), 128)
    mix = scene(SECONDS)
    blocks = [mix[s: s + 128] for s in range(0, len(mix), 128)]
    warm = 2 * SR // 128
    for b in blocks[:warm]:
        proc.process(b)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for b in blocks[warm:]:
            proc.process(b)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    chunks = len(blocks) - warm
    assert grown < 8 * 1024, f"{grown} bytes held after {chunks} more chunks"
