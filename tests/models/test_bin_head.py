"""The per-bin head of the speech extractor: grown in at zero it changes nothing, trained
it acts per bin, and the graph still streams, exports and counts its MACs."""

from dataclasses import replace

import pytest
import torch
from avedge.models import conv_stft
from avedge.models import speech_extractor as se
from avedge.runtime.errors import AvedgeError

DF = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2, df_order=3,
             speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))
HEAD = replace(DF, bin_head=8)


def random_model(dims, seed=0) -> se.Extractor:
    torch.manual_seed(seed)
    m = se.Extractor(dims)
    params = [m.film.weight, m.out_proj.weight]
    if m.bin_head is not None:
        params += [m.bin_head.out.weight]
    for p in params:  # zero-init would hide these paths
        torch.nn.init.normal_(p, std=0.3)
    return m.eval()


def test_neighbours_stacks_the_bins_below_and_above():
    z = torch.arange(5.0).reshape(1, 1, 5, 1)  # bins 0..4, one channel
    n = se.neighbours(z)[0, 0]  # (5, 3): [below, self, above]
    assert n.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0]]


def test_grown_head_starts_as_the_model_without_it_then_acts():
    small = random_model(DF)
    big = se.grow(se.Extractor(HEAD), small.state_dict()).eval()
    x = torch.randn(2, 128 * 16) * 0.2
    emb = small.speaker_encoder(torch.randn(2, se.ENROLL_SAMPLES) * 0.1)
    with torch.no_grad():
        torch.testing.assert_close(se.extract(big, x, emb), se.extract(small, x, emb),
                                   atol=0, rtol=0)
        big.bin_head.out.weight.normal_(std=0.3)
        assert (se.extract(big, x, emb) - se.extract(small, x, emb)).abs().max() > 1e-3


def test_head_is_the_same_function_at_every_bin():
    """Weights shared over frequency: moving the head's input one bin up moves its output
    one bin up (away from the edges, where the zero padding differs)."""
    head = random_model(HEAD).bin_head
    b, t, f = 1, 2, conv_stft.N_BINS
    taps, n_feat = 2 * HEAD.df_order, HEAD.n_features // f
    h = torch.zeros(b, t, HEAD.d_model)  # the frame vector is bin-specific: keep it out
    with torch.no_grad():
        head.proj.bias.zero_()
    logits = torch.randn(b, t, taps, f)
    feats = torch.randn(b, n_feat, f, t)
    with torch.no_grad():
        y = head(h, logits.reshape(b, t, -1), feats.reshape(b, -1, t)).reshape(b, t, taps, f)
        up = head(h, logits.roll(1, 3).reshape(b, t, -1),
                  feats.roll(1, 2).reshape(b, -1, t)).reshape(b, t, taps, f)
    torch.testing.assert_close(up[..., 3:f - 2], y[..., 2:f - 3], atol=1e-5, rtol=0)


def test_head_streams_exports_and_counts_its_macs():
    m = random_model(HEAD)
    emb = m.speaker_encoder(torch.randn(2, se.ENROLL_SAMPLES) * 0.1)
    x = torch.randn(2, 128 * 20) * 0.2
    with torch.no_grad():
        whole = m(x, emb, *m.init_state(2))[0]
        state, outs = m.init_state(2), []
        for k in range(20):
            o, *state = m(x[:, k * 128:(k + 1) * 128], emb, *state)
            outs.append(o)
    assert whole.abs().max() > 1e-3
    assert (torch.cat(outs, 1) - whole).abs().max() <= 1e-4
    ex = se.example_inputs(m)
    got = torch.export.export(m, ex).module()(*ex)
    with torch.no_grad():
        ref = m(*ex)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    assert se.macs_per_chunk(HEAD)["extractor"] > se.macs_per_chunk(DF)["extractor"]


def test_dims_refuse_a_negative_head_and_old_records_have_none():
    with pytest.raises(AvedgeError, match="bin_head"):
        replace(DF, bin_head=-1)
    assert se.Dims.from_json({"df_order": 4}).bin_head == 0


def test_npu_form_refuses_the_head():
    from avedge.models.extractor_npu import RingExtractor

    with pytest.raises(AvedgeError, match="per-bin head"):
        RingExtractor(random_model(replace(HEAD, df_order=1)))


def test_training_grows_the_head_in_and_gives_it_its_own_learning_rate(tmp_path):
    from dataclasses import asdict

    from avedge.models import training_extractor as tr
    from tone_voices import ToneVoices

    def cfg(name, dims, **kw):
        return tr.TrainConfig(corpus="unused", out=str(tmp_path / name), batch=4, seconds=1.0,
                              lr=3e-3, warmup=2, eval_every=100, eval_n=4, threads=1,
                              dims=asdict(dims), holdout_synth=None, **kw)
    data, quiet = ToneVoices(), (lambda *a: None)
    tr.train(cfg("df.safetensors", DF, steps=3), data=data, progress=False, log=quiet)
    grown = cfg("head.safetensors", HEAD, steps=3, init=str(tmp_path / "df.ckpt.pt"))
    tr.train(grown, data=data, progress=False, log=quiet)
    ck = torch.load(tmp_path / "head.ckpt.pt", weights_only=False)
    assert [g["scale"] for g in ck["opt"]["param_groups"]] == [1.0, grown.head_lr_scale]
    assert ck["model"]["bin_head.out.weight"].abs().max() > 0  # trained away from zero
    rec = tr.train(replace(grown, steps=5, init=None), data=data, progress=False, log=quiet)
    assert rec["steps"] == 5  # resumed with its two parameter groups
