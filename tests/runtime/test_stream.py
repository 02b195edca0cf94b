import numpy as np
import pytest
import torch
from avedge.runtime import load
from avedge.runtime.errors import InputError
from hypothesis import given, settings
from hypothesis import strategies as st


def _stream_all(stream, signal, blocks):
    pieces, i = [], 0
    for b in blocks:
        stream.accept(signal[i:i + b])
        i += b
        if stream.ready():
            pieces.append(stream.read())
    stream.accept(signal[i:])
    pieces.append(stream.finish())
    return np.concatenate(pieces, axis=-1)


@pytest.fixture(scope="module")
def signal():
    return (np.random.default_rng(3).standard_normal(3001) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def whole(tiny_model, signal):
    model, _ = tiny_model
    return model.forward_full(torch.from_numpy(signal)[None]).detach().numpy()


@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_stream_equals_whole_signal(cpu_artifact, signal, whole, backend):
    stream = load(cpu_artifact.path, backend=backend).stream()
    out = _stream_all(stream, signal, [100] * 20 + [1, 7, 300])
    assert out.shape == whole.shape  # aligned: lookahead removed, tail flushed
    np.testing.assert_allclose(out, whole, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(blocks=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_block_sizes_give_the_same_output(cpu_artifact, signal, whole, blocks):
    stream = load(cpu_artifact.path, backend="onnxruntime").stream()
    np.testing.assert_allclose(_stream_all(stream, signal, blocks), whole, atol=1e-5)


def test_reset_restarts_from_the_initial_state(cpu_artifact, signal, whole):
    stream = load(cpu_artifact.path, backend="onnxruntime").stream()
    stream.accept(signal[:500])
    stream.read()
    stream.reset()
    np.testing.assert_allclose(_stream_all(stream, signal, [256] * 5), whole, atol=1e-5)


def test_malformed_block_is_refused_and_stream_survives(cpu_artifact, signal, whole):
    stream = load(cpu_artifact.path, backend="onnxruntime").stream()
    stream.accept(signal[:1000])
    bad = signal[1000:1100].copy()
    bad[5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        stream.accept(bad)
    with pytest.raises(InputError, match="dtype int16"):
        stream.accept(np.zeros(10, np.int16))
    with pytest.raises(InputError, match=r"expected \(1, T\)"):
        stream.accept(np.zeros((2, 10), np.float32))
    stream.accept(signal[1000:])
    out = np.concatenate([stream.read(), stream.finish()], axis=-1)
    np.testing.assert_allclose(out, whole, atol=1e-5)
    with pytest.raises(InputError, match="finished"):
        stream.accept(signal[:10])


def test_short_and_empty_input(cpu_artifact, tiny_model):
    model, _ = tiny_model
    stream = load(cpu_artifact.path, backend="onnxruntime").stream()
    assert stream.finish().shape == (1, 0)
    stream.reset()
    x = np.full(5, 0.3, np.float32)
    stream.accept(x)
    assert not stream.ready()
    want = model.forward_full(torch.from_numpy(x)[None]).detach().numpy()
    np.testing.assert_allclose(stream.finish(), want, atol=1e-5)


class Conditioned(torch.nn.Module):
    """forward(chunk, gain, state): a condition input held constant over a stream."""

    chunk_samples = 16

    def forward(self, chunk, gain, state):  # (1, 16), (1, 1), (1, 16)
        return chunk * gain + state, chunk


def test_conditions_are_held_over_the_stream(tmp_path):
    from avedge.targets import get_target

    ex = (torch.zeros(1, 16), torch.ones(1, 1), torch.zeros(1, 16))
    art = get_target("cpu").export(Conditioned(), ex, tmp_path / "cond")
    assert art.manifest["stream"]["conditions"] == ["gain"]
    sess = load(art.path, backend="onnxruntime")
    with pytest.raises(InputError, match=r"missing \['gain'\]"):
        sess.stream()
    stream = sess.stream(conditions={"gain": np.full((1, 1), 2.0, np.float32)})
    x = np.arange(40, dtype=np.float32)
    stream.accept(x)
    out = np.concatenate([stream.read(), stream.finish()], axis=-1)[0]
    prev = np.concatenate([np.zeros(16), x[:16], x[16:32]])[:40]  # the chunk before, 0 at start
    np.testing.assert_allclose(out, 2 * x + prev)
