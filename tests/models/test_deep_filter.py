"""Deep filtering in the speech extractor: taps over past frames, the phase-advance
features, growing trained weights into it, and the warm start of a training run."""

from dataclasses import asdict, replace

import pytest
import torch
from avedge.models.common import conv_stft
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from avedge.runtime.errors import AvedgeError
from tone_voices import ToneVoices

PLAIN = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2, df_order=1,
                speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))
DF = replace(PLAIN, df_order=3)


def random_model(dims, seed=0) -> se.Extractor:
    torch.manual_seed(seed)
    m = se.Extractor(dims)
    for p in (m.film.weight, m.out_proj.weight):  # zero-init would hide these paths
        torch.nn.init.normal_(p, std=0.3)
    return m.eval()


def test_stft_state_with_past_frames_replays_the_previous_frames():
    s = conv_stft.ConvSTFT()
    x = torch.randn(1, 128 * 8)
    whole, _ = s.analyze(x, s.init_state(1, past_frames=2)[0])  # (1, 2F, 2 + 8)
    tail = s.init_state(1, past_frames=2)[0]
    assert tail.shape == (1, 64 + 2 * 128)
    for k in range(8):
        spec, tail = s.analyze(x[:, k * 128:(k + 1) * 128], tail)
        assert tail.shape == (1, 64 + 2 * 128)
        torch.testing.assert_close(spec, whole[:, :, k: k + 3], atol=1e-5, rtol=0)


def test_a_tap_on_the_previous_frame_delays_by_one_hop():
    """Mask 0 on the current frame, 1 on the frame before: the output is the input one
    hop (8 ms) later than the plain identity (lookahead only)."""
    m = se.Extractor(DF).eval()
    f2 = 2 * conv_stft.N_BINS
    with torch.no_grad():
        m.out_proj.weight.zero_()
        m.out_proj.bias.zero_()
        m.out_proj.bias[f2: f2 + conv_stft.N_BINS] = 30.0  # tap 1, real part: tanh -> 1
    x = torch.randn(1, 128 * 20)
    emb = torch.zeros(1, DF.speaker.emb_dim)
    with torch.no_grad():
        y = m(x, emb, *m.init_state(1))[0]
    lag = se.LOOKAHEAD + se.CHUNK
    torch.testing.assert_close(y[:, lag:], x[:, :-lag], atol=1e-4, rtol=0)


def test_phase_advance_locates_a_tone_inside_its_bin():
    """Two tones in the same 83 Hz bin differ only in where they sit in it: the phase
    advance over a hop tells them apart, the log power does not."""
    s = conv_stft.ConvSTFT()
    t = torch.arange(128 * 10) / 16000
    angles = []
    for f in (1000.0 - 30, 1000.0 + 30):  # bin 12 is centred on 1000 Hz
        spec, _ = s.analyze(torch.sin(2 * torch.pi * f * t)[None], s.init_state(1)[0])
        q = se.phase_advance(spec[:, :, 5:6], spec[:, :, 4:5])
        angles.append(torch.atan2(q[0, 97 + 12, 0], q[0, 12, 0]))
    hop_phase = 2 * torch.pi * 60 * 128 / 16000  # 60 Hz apart -> phases differ by this
    diff = torch.remainder(angles[1] - angles[0], 2 * torch.pi)
    assert abs(float(diff) - hop_phase) < 0.05


def test_grow_keeps_the_function_then_fine_tunes_new_taps():
    small = random_model(PLAIN)
    big = se.grow(se.Extractor(DF), small.state_dict()).eval()
    big.speaker_encoder.load_state_dict(small.speaker_encoder.state_dict())
    x = torch.randn(2, 128 * 16) * 0.2
    emb = small.speaker_encoder(torch.randn(2, se.ENROLL_SAMPLES) * 0.1)
    with torch.no_grad():
        torch.testing.assert_close(se.extract(big, x, emb), se.extract(small, x, emb),
                                   atol=1e-6, rtol=0)
        big.out_proj.weight[2 * conv_stft.N_BINS:] += 0.1 * torch.randn(
            big.out_proj.weight[2 * conv_stft.N_BINS:].shape)  # the new taps now act
        assert (se.extract(big, x, emb) - se.extract(small, x, emb)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="cannot grow"):
        se.grow(se.Extractor(replace(DF, d_model=24)), small.state_dict())


def test_deep_filter_graph_exports_and_counts_its_macs():
    m = random_model(DF)
    ex = se.example_inputs(m)
    assert ex[2].shape == (1, se.LOOKAHEAD + 2 * se.CHUNK)  # the two past hops ride along
    got = torch.export.export(m, ex).module()(*ex)
    with torch.no_grad():
        ref = m(*ex)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    assert se.macs_per_chunk(DF)["extractor"] > se.macs_per_chunk(PLAIN)["extractor"]


def test_npu_form_refuses_deep_filtered_weights():
    from avedge.models.speech_extractor.npu import RingExtractor

    with pytest.raises(AvedgeError, match="df_order"):
        RingExtractor(random_model(DF))


def _cfg(tmp_path, name, dims, **kw):
    return tr.TrainConfig(corpus="unused", out=str(tmp_path / name), batch=4, seconds=1.0,
                          lr=3e-3, warmup=2, eval_every=100, eval_n=4, threads=1,
                          dims=asdict(dims), holdout_synth=None, **kw)


def test_training_warm_starts_from_a_checkpoint_grown_to_deep_filtering(tmp_path):
    data = ToneVoices()
    log = []
    base = _cfg(tmp_path, "plain.safetensors", PLAIN, steps=6)
    tr.train(base, data=data, progress=False, log=log.append)
    src = se.load_weights(base.out)
    ckpt = str(tmp_path / "plain.ckpt.pt")
    grown = se.Extractor(DF)
    head = torch.nn.Linear(PLAIN.speaker.emb_dim, 1, bias=False)  # as train() makes it here
    info = tr.warm_start(ckpt, grown, head)
    assert info == {"from": "plain.ckpt.pt", "steps": 6, "train_minutes": info["train_minutes"]}
    x, emb = torch.randn(1, 128 * 10) * 0.2, torch.randn(1, PLAIN.speaker.emb_dim)
    with torch.no_grad():
        torch.testing.assert_close(se.extract(grown.eval(), x, emb), se.extract(src, x, emb),
                                   atol=1e-6, rtol=0)
    cfg = _cfg(tmp_path, "df.safetensors", DF, steps=4, init=ckpt)
    assert tr.phase_at(cfg, 0) == len(tr.CURRICULUM) - 1  # no easy phase again
    rec = tr.train(cfg, data=data, progress=False, log=log.append)
    assert rec["steps"] == 4 and rec["warm_start"]["steps"] == 6
    assert se.load_weights(cfg.out).dims == DF
    # Resumed without --init, the run keeps the warm start's schedule (no curriculum).
    resumed = tr.train(replace(cfg, steps=6, init=None), data=data, progress=False,
                       log=log.append)
    assert resumed["steps"] == 6 and resumed["config"]["init"] == ckpt
    with pytest.raises(AvedgeError, match="does not exist"):
        tr.warm_start(str(tmp_path / "nope.safetensors"), se.Extractor(DF), head)
    with pytest.raises(AvedgeError, match="does not fit"):
        tr.warm_start(base.out, se.Extractor(replace(DF, d_model=24)), head)


def test_npu_fine_tuning_refuses_deep_filtered_weights_before_reading_the_corpus(tmp_path):
    from avedge.models.speech_extractor import train_npu as trn

    weights = tmp_path / "df.safetensors"
    se.save_weights(random_model(DF), weights)
    cfg = trn.TrainConfig(corpus=str(tmp_path / "no-bank"), init=str(weights),
                          out=str(tmp_path / "npu.safetensors"))
    with pytest.raises(AvedgeError, match="deep-filters over 3 frames"):
        trn.train(cfg, progress=False)


def test_resuming_a_checkpoint_of_other_dims_says_which_to_pass(tmp_path):
    data = ToneVoices()
    plain = _cfg(tmp_path, "w.safetensors", PLAIN, steps=2)
    tr.train(plain, data=data, progress=False, log=lambda *a: None)
    with pytest.raises(AvedgeError, match="df_order.*plain-mask checkpoint"):
        tr.train(replace(plain, dims=asdict(DF), steps=4), data=data, progress=False,
                 log=lambda *a: None)
