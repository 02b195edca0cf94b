"""The speech extractor: conv-STFT, streaming parity, causality, export, weights, training."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from avedge.models.common import conv_stft
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from tone_voices import ToneVoices

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


def tiny_model(seed=0) -> se.Extractor:
    torch.manual_seed(seed)
    m = se.Extractor(TINY)
    torch.nn.init.normal_(m.film.weight, std=0.5)  # zero-init FiLM would hide the speaker path
    return m.eval()


def test_conv_stft_reconstructs_input_delayed_by_lookahead():
    s = conv_stft.ConvSTFT()
    x = torch.randn(2, 128 * 12)
    spec, _ = s.analyze(x, *s.init_state(2)[:1])
    y, _ = s.synthesize(spec, s.init_state(2)[1])
    assert spec.shape == (2, 2 * conv_stft.N_BINS, 12)
    torch.testing.assert_close(y[:, 64:], x[:, :-64], atol=1e-5, rtol=0)


def test_conv_stft_matches_rfft_of_windowed_frame():
    s = conv_stft.ConvSTFT()
    x = torch.randn(1, 128 * 6)
    spec, _ = s.analyze(x, torch.zeros(1, 64))
    frame = torch.cat([torch.zeros(1, 64), x], 1)[:, 3 * 128: 3 * 128 + 192]
    ref = torch.fft.rfft(frame * conv_stft.sqrt_flat_top_window().float())
    torch.testing.assert_close(spec[:, :97, 3], ref.real, atol=1e-4, rtol=0)
    torch.testing.assert_close(spec[:, 97:, 3], ref.imag, atol=1e-4, rtol=0)


@pytest.mark.parametrize("df_order", [1, 4])  # a plain mask; deep filtering (the default)
def test_streaming_equals_whole_utterance(df_order):
    torch.manual_seed(0)
    m = se.Extractor(replace(TINY, df_order=df_order)).eval()
    for p in (m.film.weight, m.out_proj.weight):  # zero-init would hide these paths
        torch.nn.init.normal_(p, std=0.3)
    emb = m.speaker_encoder(torch.randn(2, se.ENROLL_SAMPLES) * 0.1)
    x = torch.randn(2, 128 * 40) * 0.2
    with torch.no_grad():
        whole = m(x, emb, *m.init_state(2))[0]
        state, outs = m.init_state(2), []
        for k in range(40):
            o, *state = m(x[:, k * 128:(k + 1) * 128], emb, *state)
            outs.append(o)
    assert whole.abs().max() > 1e-3  # the check below must not pass on silence
    assert (torch.cat(outs, 1) - whole).abs().max() <= 1e-4


def test_output_is_causal_up_to_lookahead():
    m = tiny_model()
    emb = torch.nn.functional.normalize(torch.randn(1, TINY.speaker.emb_dim), dim=1)
    x = torch.randn(1, 128 * 20)
    x2 = x.clone()
    x2[:, 128 * 10:] += torch.randn(1, 128 * 10)  # change the future from sample 1280 on
    with torch.no_grad():
        a = m(x, emb, *m.init_state(1))[0]
        b = m(x2, emb, *m.init_state(1))[0]
    # Output chunk k (samples [128k, 128k+128), aligned to input n - 64) is emitted when
    # input chunk k is complete: it may not depend on any later input sample.
    assert torch.equal(a[:, :128 * 10], b[:, :128 * 10])
    assert not torch.allclose(a[:, 128 * 10:], b[:, 128 * 10:])


def test_speaker_embedding_changes_output():
    m = tiny_model()
    x = torch.randn(1, 128 * 10)
    e1, e2 = torch.nn.functional.normalize(torch.randn(2, TINY.speaker.emb_dim), dim=1)
    with torch.no_grad():
        y1 = m(x, e1[None], *m.init_state(1))[0]
        y2 = m(x, e2[None], *m.init_state(1))[0]
    assert (y1 - y2).abs().max() > 1e-3


def test_extract_keeps_length_and_alignment():
    m = tiny_model()
    emb = torch.nn.functional.normalize(torch.randn(1, TINY.speaker.emb_dim), dim=1)
    x = torch.randn(1, 1000)
    y = se.extract(m, x, emb)
    assert y.shape == (1, 1000)
    full = m(torch.nn.functional.pad(x, (0, 1024 + 128 - 1000)), emb, *m.init_state(1))[0]
    torch.testing.assert_close(y, full[:, 64:1064])


def test_speaker_encoder_output_is_unit_norm_and_depends_on_voice():
    m = tiny_model()
    t = torch.arange(se.ENROLL_SAMPLES) / se.SAMPLE_RATE
    a = torch.sin(2 * torch.pi * 120 * t)[None] * 0.1
    b = torch.sin(2 * torch.pi * 1800 * t)[None] * 0.1
    with torch.no_grad():
        ea, eb = m.speaker_encoder(a), m.speaker_encoder(b)
    torch.testing.assert_close(ea.norm(dim=1), torch.ones(1))
    assert (ea - eb).abs().max() > 1e-3


def test_fit_enrollment_loops_short_and_picks_loudest_window():
    short = torch.arange(1.0, 20001.0)
    out = se.fit_enrollment(short)
    assert out.shape == (se.ENROLL_SAMPLES,) and torch.equal(out[20000:40000], short)
    long = torch.zeros(160000)
    long[100000:110000] = 1.0
    win = se.fit_enrollment(long)
    assert win.shape == (se.ENROLL_SAMPLES,) and win.sum() == 10000


def test_export_matches_eager():
    m = tiny_model()
    ex = se.example_inputs(m)
    ep = torch.export.export(m, ex)
    with torch.no_grad():
        ref = m(*ex)
    got = ep.module()(*ex)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    assert [x.shape for x in ref[1:]] == [x.shape for x in ex[2:]]  # state in == state out


def test_si_sdr_is_scale_invariant_and_penalises_noise():
    ref = torch.randn(1, 16000)
    assert se.si_sdr(3.0 * ref, ref) > 60
    noisy = ref + torch.randn(1, 16000)
    assert abs(float(se.si_sdr(noisy, ref)) - 0.0) < 0.5
    m = se.metric(ref + 0.1 * torch.randn(1, 16000), ref, noisy)
    assert m["si_sdri_db"] > 15


def test_weights_round_trip_and_errors(tmp_path):
    m = tiny_model()
    p = tmp_path / "w.safetensors"
    se.save_weights(m, p)
    m2 = se.load_weights(p)
    assert m2.dims == TINY
    ex = se.example_inputs(m)
    torch.testing.assert_close(m2(*ex)[0], m(*ex)[0])
    enr = torch.randn(1, se.ENROLL_SAMPLES)
    torch.testing.assert_close(m2.speaker_encoder(enr), m.speaker_encoder(enr))
    from avedge.runtime.errors import AvedgeError
    with pytest.raises(AvedgeError, match="does not exist"):
        se.load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(AvedgeError, match="do not match"):
        se.load_weights(p, dims=se.Dims(d_model=24, d_hidden=32, n_blocks=3))


# ----------------------------------------------------------------------------- training

def test_training_lowers_loss_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = tr.TrainConfig(corpus="unused", out=str(out), steps=24, batch=4, seconds=1.0,
                         lr=3e-3, warmup=2, eval_every=12, eval_n=8, threads=1,
                         dims=asdict(TINY),
                         holdout_synth=None)
    data = ToneVoices()
    cfg12 = tr.TrainConfig(**{**cfg.__dict__, "steps": 12})
    rec = tr.train(cfg12, data=data, progress=False, log=lambda *a: None)
    assert rec["steps"] == 12 and out.exists() and out.with_suffix(".ckpt.pt").exists()
    first = rec["history"][-1]["val"]["si_sdri_db"]
    rec2 = tr.train(cfg, data=data, progress=False, log=lambda *a: None)  # resumes at 12
    assert rec2["steps"] == 24 and rec2["sessions"] == 2
    assert [h["step"] for h in rec2["history"]] == [12, 24]
    last = rec2["history"][-1]["val"]["si_sdri_db"]
    assert last > first  # it learned something on the tone task
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["steps"] == 24 and saved["corpus"]["bank"].startswith("tone")
    m = se.load_weights(out)
    assert m.dims == TINY
    ev = tr.final_eval(cfg, n=4, data=data)
    assert set(ev) >= {"heldout_voices", "heldout_voices_noise_only"}
    assert ev["heldout_voices"]["si_sdri_se_db"] > 0  # the spread of the mean is reported
    assert json.loads(out.with_suffix(".json").read_text())["eval"]["heldout_voices"]["n"] == 4


def test_macs_count_matches_reference_size_budget():
    d = se.Dims()
    macs = se.macs_per_chunk(d)
    # the hearable budget: a few MMAC per 8 ms chunk
    assert 0.5e6 < macs["extractor"] < 5e6
    small = se.macs_per_chunk(TINY)["extractor"]
    assert small < macs["extractor"]


def test_lr_schedule_and_curriculum_phases():
    cfg = tr.TrainConfig(steps=1000, warmup=100, lr=1e-3)
    assert tr.lr_at(cfg, 0) < tr.lr_at(cfg, 99) <= 1e-3
    assert tr.lr_at(cfg, 999) < 0.1e-3
    assert [tr.phase_at(cfg, s) for s in (0, 149, 150, 399, 400, 999)] == [0, 0, 1, 1, 2, 2]


def test_calibration_inputs_are_real_stream_states():
    m = tiny_model()
    batches = m.calibration_inputs()
    ex = se.example_inputs(m)
    assert len(batches) > 30
    assert all([t.shape for t in b] == [t.shape for t in ex] for b in batches)
    assert float(batches[-1][4].abs().max()) > 0  # conv state filled by the stream so far
    assert float(torch.stack([b[0].abs().max() for b in batches]).max()) > 0.01  # speech


def test_export_plan_recipes_follow_precision():
    from avedge.models.registry import get_family
    from avedge.targets import get_target

    from avedge.api import _decide, target_facts

    fam, model = get_family(se.NAME), se.Extractor(se.Dims(d_model=16, d_hidden=32, n_blocks=2))

    def recipes(target, user=None):
        t = get_target(target)
        return {c.name: (c.recipe, src)
                for c, src in _decide(fam.export_plan(model, target_facts(t)), user, t)}

    assert recipes("hearable") == {"speaker_encoder": ("fp32", "family"),
                                   "extractor": ("int8", "family")}
    assert recipes("cpu") == {"speaker_encoder": ("fp32", "family"),
                              "extractor": ("fp32", "target")}
    assert recipes("hearable", "fp16")["extractor"] == ("fp16", "user")  # the user wins
    # ... on the per-chunk graph: the run-once encoder keeps the family's fp32
    assert recipes("hearable", "int8-static")["speaker_encoder"] == ("fp32", "family")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_training_on_cuda_resumes_on_cpu(tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = tr.TrainConfig(corpus="unused", out=str(out), steps=6, batch=4, seconds=1.0,
                         warmup=2, eval_every=6, eval_n=4, threads=1, dims=asdict(TINY),
                         holdout_synth=None, device="cuda")
    rec = tr.train(cfg, data=ToneVoices(), progress=False, log=lambda *a: None)
    assert rec["steps"] == 6 and se.load_weights(out).dims == TINY
    cpu = tr.TrainConfig(**{**cfg.__dict__, "steps": 8, "device": "cpu"})
    assert tr.train(cpu, data=ToneVoices(), progress=False, log=lambda *a: None)["steps"] == 8


def test_train_refuses_an_unknown_device_before_reading_the_corpus(tmp_path, capsys):
    from avedge.cli import main

    assert main(["train", "speech-extractor", "--device", "tpu", "--corpus",
                 str(tmp_path / "none"), "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--device 'tpu' is not a torch device" in err and "cpu or cuda" in err
