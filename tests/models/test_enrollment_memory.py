"""The speech extractor's enrollment memory (issue #19): tokens pooled from the enrollment
that the extractor's frames attend to, packed after the speaker embedding in the one
condition vector; grown into trained weights without changing them; streaming, export
through both runtimes, the NPU form's refusal, and a warm-started training run."""

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from avedge.models.speech_extractor.speaker_encoder import grow_encoder, split_condition
from avedge.runtime.errors import AvedgeError
from tone_voices import ToneVoices

PLAIN = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2, df_order=2,
                speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))
MEM = replace(PLAIN, memory_every=2, memory_heads=2,
              speaker=replace(PLAIN.speaker, memory_tokens=4, memory_dim=8))
SR = se.SAMPLE_RATE


def voice(seconds, f0, seed=0):
    """Harmonics of f0 switched on and off like syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
    env = np.repeat(rng.random(len(t) // 1600 + 1) > 0.3, 1600)[: len(t)]
    y = 0.1 * x * env + 0.003 * rng.standard_normal(len(t))
    return torch.from_numpy(y.astype(np.float32))


def random_model(dims, seed=0) -> se.Extractor:
    torch.manual_seed(seed)
    m = se.Extractor(dims)
    for p in (m.film.weight, m.out_proj.weight):  # zero-init would hide these paths
        torch.nn.init.normal_(p, std=0.3)
    for att in m.memory.values():
        torch.nn.init.normal_(att.out.weight, std=0.3)
    return m.eval()


def enroll(m, *clips):
    with torch.no_grad():
        return m.speaker_encoder.eval()(torch.stack([se.fit_enrollment(c) for c in clips]))


def test_condition_packs_the_embedding_then_keys_and_values():
    m = random_model(MEM)
    cond = enroll(m, voice(3, 140), voice(3, 230, seed=1))
    d = MEM.speaker
    assert cond.shape == (2, d.condition_dim) == (2, 8 + 2 * 4 * 8)
    emb, keys, values = split_condition(cond, d)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))  # the embedding as before
    assert keys.shape == values.shape == (2, 4, 8)
    assert (keys[0] - keys[1]).abs().max() > 1e-2  # the memory depends on the voice
    assert MEM.memory_blocks == [0, 2] and PLAIN.memory_blocks == []
    assert split_condition(emb, PLAIN.speaker)[1:] == (None, None)


def test_growing_trained_weights_keeps_their_function_until_the_memory_learns():
    small = random_model(PLAIN)
    big = se.grow(se.Extractor(MEM), small.state_dict()).eval()
    grow_encoder(big.speaker_encoder, small.speaker_encoder.state_dict())
    clips = voice(3, 140), voice(3, 220, seed=1)
    cond, emb = enroll(big, *clips), enroll(small, *clips)
    torch.testing.assert_close(cond[:, :PLAIN.speaker.emb_dim], emb, atol=0, rtol=0)
    x = torch.stack([voice(1, 140, seed=5), voice(1, 220, seed=6)]) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(se.extract(big, x, cond), se.extract(small, x, emb),
                                   atol=1e-6, rtol=0)
        for att in big.memory.values():  # the attentions now act: the memory matters
            torch.nn.init.normal_(att.out.weight, std=0.3)
        y = se.extract(big, x, cond)
        assert (y - se.extract(small, x, emb)).abs().max() > 1e-3
        swapped = cond.clone()
        swapped[:, 8:] = cond.flip(0)[:, 8:]  # same embeddings, the other voice's memory
        assert (se.extract(big, x, swapped) - y).abs().max() > 1e-3
    with pytest.raises(ValueError, match="lack"):  # only the memory may be missing
        se.grow(se.Extractor(MEM), {k: v for k, v in small.state_dict().items()
                                    if k != "film.weight"})
    with pytest.raises(ValueError, match="unexpected"):
        grow_encoder(se.Extractor(PLAIN).speaker_encoder, big.speaker_encoder.state_dict())


def test_streaming_with_memory_equals_whole_utterance():
    m = random_model(MEM)
    cond = enroll(m, voice(3, 140))
    x = voice(0.5, 140, seed=2)[None, : 128 * 40]
    with torch.no_grad():
        whole = m(x, cond, *m.init_state(1))[0]
        state, outs = m.init_state(1), []
        for k in range(40):
            o, *state = m(x[:, k * 128:(k + 1) * 128], cond, *state)
            outs.append(o)
    assert whole.abs().max() > 1e-3
    assert (torch.cat(outs, 1) - whole).abs().max() <= 1e-4


@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_exported_memory_model_streams_in_the_runtime_as_in_eager(tmp_path, backend):
    from avedge.runtime.pipelines.extraction import Extraction

    from avedge.api import export

    m = random_model(MEM)
    out = tmp_path / "mem-cpu"
    export(m, "cpu", out, example_inputs=se.example_inputs(m), family=se.NAME, measure=False)
    ex = Extraction.from_artifact(out, backend=backend)
    clip = voice(2.0, 140).numpy()
    cond = ex.enroll(clip)
    ref_cond = enroll(m, torch.from_numpy(clip))
    assert cond.shape == (1, MEM.speaker.condition_dim)
    np.testing.assert_allclose(cond, ref_cond.numpy(), atol=1e-4)
    mix = (voice(1.3, 140, seed=1) + voice(1.3, 230, seed=2)).numpy()
    res = ex.process(mix, cond, block=1000)
    with torch.no_grad():
        whole = se.extract(m, torch.from_numpy(mix)[None], ref_cond)[0].numpy()
    assert np.abs(whole).max() > 1e-3
    assert np.abs(res.samples - whole).max() <= 1e-4


def test_npu_form_refuses_a_memory_model():
    from avedge.models.speech_extractor import npu

    with pytest.raises(AvedgeError, match="no enrollment memory"):
        npu.components(random_model(replace(MEM, df_order=1)))


def test_bad_memory_dims_are_refused():
    with pytest.raises(AvedgeError, match="multiple of memory_heads"):
        replace(MEM, memory_heads=3)
    with pytest.raises(AvedgeError, match="memory_every >= 1"):
        replace(MEM, memory_every=0)


def test_macs_count_the_memory_attentions():
    extra = se.macs_per_chunk(MEM)["extractor"] - se.macs_per_chunk(PLAIN)["extractor"]
    # two attentions: query and output projections (16x8 each) + scores and mix over 4x8
    assert extra == 2 * (2 * 16 * 8 + 2 * 4 * 8)


def test_training_warm_starts_a_memory_model_from_plain_weights(tmp_path):
    data = ToneVoices()
    cfg = {"corpus": "unused", "batch": 4, "seconds": 1.0, "lr": 3e-3, "warmup": 2,
           "eval_every": 100, "eval_n": 4, "threads": 1, "holdout_synth": None}
    base = tr.TrainConfig(out=str(tmp_path / "plain.safetensors"), steps=4,
                          dims=asdict(PLAIN), **cfg)
    tr.train(base, data=data, progress=False, log=lambda *a: None)
    grown = tr.TrainConfig(out=str(tmp_path / "mem.safetensors"), steps=6, init=base.out,
                           dims=asdict(MEM), **cfg)
    rec = tr.train(grown, data=data, progress=False, log=lambda *a: None)
    assert rec["warm_start"]["steps"] == 4 and rec["steps"] == 6
    trained = se.load_weights(grown.out)
    assert trained.dims == MEM
    moved = max(float(a.out.weight.detach().abs().max()) for a in trained.memory.values())
    assert moved > 0  # the memory's output left zero: it trained
