"""The NPU form of the speech extractor computes what the extractor computes.

FiLM hoisted into the run-once condition graph, the dilated history as ring-buffer
taps: streamed in PyTorch and through the runtime's ring buffer (ExecuTorch), it must
equal the whole-utterance extractor.
"""

import numpy as np
import pytest
import torch
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import npu
from avedge.runtime import load
from avedge.runtime.errors import AvedgeError
from avedge.targets import get_target
from avedge.targets.signature import describe

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=4, dilation_cycle=3, df_order=1,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


def tiny_model(seed=0) -> se.Extractor:
    torch.manual_seed(seed)
    m = se.Extractor(TINY)
    torch.nn.init.normal_(m.film.weight, std=0.5)  # zero-init FiLM would hide the speaker path
    return m.eval()


def stream_ring(ring, film, x, n_chunks):
    history = npu.RingHistory(ring.ring_states)
    stft_state, ola_state, *taps = ring.init_state(1)
    outs = []
    with torch.no_grad():
        for k in range(n_chunks):
            y, stft_state, ola_state, *frames = ring(
                x[:, k * se.CHUNK:(k + 1) * se.CHUNK], film, stft_state, ola_state, *taps)
            history.push(frames)
            taps = history.taps()
            outs.append(y)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("power_scale,log_ranges", [(1.0, 1), (16.0, 1), (16.0, 4)])
def test_ring_form_streamed_equals_whole_utterance_extractor(power_scale, log_ranges):
    m = tiny_model()
    enroll = torch.randn(1, se.ENROLL_SAMPLES) * 0.1
    x = torch.randn(1, se.CHUNK * 40) * 0.2
    with torch.no_grad():
        whole = m(x, m.speaker_encoder(enroll), *m.init_state(1))[0]
        film = npu.FilmCondition(m)(enroll)
    got = stream_ring(npu.RingExtractor(m, power_scale, log_ranges), film, x, 40)
    assert whole.abs().max() > 1e-3  # must not pass on silence
    assert (got - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("ranges", [1, 2, 4, 6])
@pytest.mark.parametrize("k", [1.0, 16.0])
def test_ranged_log_is_the_log_in_float(ranges, k):
    """Split over several tables (each an int16 range of its own on the NPU), the log of
    the power is still exactly the log, less a constant, from silence to clipping."""
    gen = torch.Generator().manual_seed(0)
    level = torch.logspace(-6, 1.5, 4000, dtype=torch.float64)  # amplitudes over 150 dB
    re = torch.randn(4000, generator=gen, dtype=torch.float64) * level
    im = torch.randn(4000, generator=gen, dtype=torch.float64) * level
    re[:10] = 0.0  # digital silence: the log's floor
    im[:10] = 0.0
    exact = torch.log((re * re + im * im) / k + se.LOG_EPS / k)
    got = npu.ranged_log_power(re, im, k, ranges) - npu.ranged_log_offset(k, ranges)
    assert float((got - exact).abs().max()) < 1e-10


def test_ring_form_refuses_no_log_table():
    with pytest.raises(ValueError, match="log_ranges must be >= 1"):
        npu.RingExtractor(tiny_model(), log_ranges=0)


def test_weights_tuned_for_a_log_form_export_that_form(tmp_path):
    path = tmp_path / "w.safetensors"
    se.save_weights(tiny_model(), path, meta={"npu_log_ranges": 3})
    ring, _ = se.npu_components(se.load_weights(path))["extractor"]
    assert ring.log_ranges == 3
    se.save_weights(tiny_model(), path)  # plain weights: one table
    ring, _ = se.npu_components(se.load_weights(path))["extractor"]
    assert ring.log_ranges == 1


def test_taps_cover_each_block_at_its_dilation():
    ring = npu.RingExtractor(tiny_model())
    # kernel 3, dilations 1, 2, 4, 1: one ring per block, two taps at lags 2d and d.
    assert ring.tap_lags == [[2, 1], [4, 2], [8, 4], [2, 1]]
    assert ring.ring_states[2] == {"input": "taps_2", "output": "frames_2",
                                   "taps": [[0, 8], [0, 4]]}


def test_signature_records_the_ring_and_keeps_it_out_of_the_state_pairs():
    comps = npu.components(tiny_model())
    ring, example = comps["extractor"]
    sig = describe(ring, example)
    assert [p["input"] for p in sig.stream["state"]] == ["stft_state", "ola_state"]
    assert sig.stream["conditions"] == ["film"]
    n = len(ring.tap_lags)
    assert [r["input"] for r in sig.stream["rings"]] == [f"taps_{i}" for i in range(n)]
    assert sig.stream["rings"] == ring.ring_states
    assert set(sig.init_state) == {"stft_state", "ola_state", *(f"taps_{i}" for i in range(n))}


def test_signature_refuses_a_ring_tap_that_names_no_row():
    _, example = npu.components(tiny_model())["extractor"]

    class BadRing(npu.RingExtractor):
        @property
        def ring_states(self):
            rings = super().ring_states
            rings[0]["taps"] = [[99, 1]] * len(rings[0]["taps"])
            return rings

    with pytest.raises(AvedgeError, match=r"bad \[row, lag\] entries \[\[99, 1\]"):
        describe(BadRing(tiny_model()), example)


def test_ring_artifact_streams_in_executorch_like_the_extractor(tmp_path):
    m = tiny_model()
    comps = npu.components(m)
    ring, example = comps["extractor"]
    get_target("cpu").export(ring, example, tmp_path / "ring", recipe="fp32")
    sess = load(tmp_path / "ring", backend="executorch")
    enroll = torch.randn(1, se.ENROLL_SAMPLES) * 0.1
    with torch.no_grad():
        film = npu.FilmCondition(m)(enroll).numpy()
        emb = m.speaker_encoder(enroll)
    x = torch.randn(1, se.CHUNK * 30) * 0.2
    stream = sess.stream({"film": film})
    parts = []
    for block in np.array_split(x.numpy(), 7, axis=1):  # blocks that straddle chunks
        stream.accept(block)
        parts.append(stream.read())
    parts.append(stream.finish())
    got = np.concatenate(parts, axis=1)
    with torch.no_grad():
        ref = se.extract(m, x, emb).numpy()
    assert got.shape == ref.shape
    assert np.abs(ref).max() > 1e-3
    assert np.abs(got - ref).max() <= 1e-4
    # reset() empties the ring: a second pass gives the same output
    stream.reset()
    stream.accept(x.numpy())
    again = np.concatenate([stream.read(), stream.finish()], axis=1)
    assert np.abs(again - got).max() <= 1e-6
