"""The lip reader's ROI cache, training windows and trainer, on a tiny espeak bank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from avedge.models.corpus import voicebank
from avedge.models.corpus.voices import small_bank_voices
from avedge.models.lipreader import data as D
from avedge.models.lipreader import model as lr
from avedge.models.lipreader import tokenizer
from avedge.models.lipreader import train as T

TINY = {"stem_channels": 4, "cnn_channels": [8, 8, 8], "d_model": 16, "heads": 2, "ffn": 16,
        "layers": 1, "n_mels": 16}
VOICES = small_bank_voices({"train": 2, "val": 1, "test": 1})


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    d = tmp_path_factory.mktemp("lipbank")
    voicebank.build_bank(d, voices=VOICES, n_per_voice={"espeak": 2}, seed=0)
    return d


@pytest.fixture(scope="module")
def cache(bank):
    return D.build_cache(bank, splits=("train", "val", "test"))


def test_cache_grows_with_the_bank_and_keeps_what_it_has(tmp_path, monkeypatch):
    from avedge.models.corpus import render

    train = [v for v in VOICES if voicebank.split_of(v) == "train"]
    voicebank.build_bank(tmp_path, voices=train[:1], n_per_voice={"espeak": 2}, seed=0)
    first = D.build_split(voicebank.open_bank(tmp_path), "train", tmp_path / "c")
    assert len(first) == 2 and first.frames.shape[0] == sum(u["frames"] for u in first.utts)
    old = np.array(first.frames)

    calls = []
    real = render.render_roi
    monkeypatch.setattr(render, "render_roi", lambda sp, p: calls.append(len(p)) or real(sp, p))
    voicebank.build_bank(tmp_path, voices=train, n_per_voice={"espeak": 2}, seed=0)
    grown = D.build_split(voicebank.open_bank(tmp_path), "train", tmp_path / "c")
    assert len(calls) == 2  # only the new voice's two utterances were rendered
    assert len(grown) == 4 and {u["voice"] for u in grown.utts} == set(train)
    np.testing.assert_array_equal(grown.frames[: len(old)], old)
    assert np.load(tmp_path / "c" / "train" / "frames.npy", mmap_mode="r").shape == \
        grown.frames.shape  # the header follows the index: a plain .npy
    again = D.build_split(voicebank.open_bank(tmp_path), "train", tmp_path / "c")
    assert len(calls) == 2 and len(again) == 4
    for u in grown.utts:  # audio is the bank's, padded to whole frames
        assert u["samples"] <= u["frames"] * D.HOP < u["samples"] + D.HOP


def test_test_split_faces_are_the_corpus_writers(bank, cache, tmp_path):
    from avedge.models.corpus.writer import write_corpus

    write_corpus(tmp_path, n=1, split="test", bank_dir=bank)
    meta = json.loads(next((tmp_path / "test").glob("*.json")).read_text())
    roi = np.load(next((tmp_path / "test").glob("*.npz")))["roi"]
    voice, index = meta["bank_utterance"]
    test = cache["test"]
    i = next(k for k, u in enumerate(test.utts) if (u["voice"], u["index"]) == (voice, index))
    np.testing.assert_array_equal(test.video(i), roi)


def test_a_window_is_padded_like_the_runtime_pads(cache):
    train = cache["train"]
    leads = []
    for i in range(len(train)):
        s = D.sample(train, i, np.random.default_rng(i), augment=False)
        n, lead = s["frames"], s["lead"]
        assert s["video"].shape == (lr.WINDOW, lr.ROI, lr.ROI) and s["video"].dtype == np.uint8
        assert s["audio"].shape == (lr.WINDOW * lr.HOP_SAMPLES,)
        assert 0 <= lead and lead + n <= lr.WINDOW
        leads.append(lead / max(1, lr.WINDOW - n))
        v = s["video"]
        assert (v[:lead] == v[lead]).all() and (v[lead + n:] == v[lead + n - 1]).all()
        np.testing.assert_array_equal(v[lead: lead + n], train.video(i)[:n])
        assert not s["audio"][: lead * lr.HOP_SAMPLES].any()
        assert not s["audio"][(lead + n) * lr.HOP_SAMPLES:].any()
        assert tokenizer.decode(s["labels"]) == " ".join(s["words"])
        if n == train.utts[i]["frames"]:  # the whole utterance
            assert s["words"] == tokenizer.normalize(train.utts[i]["text"]).split()
    # The speech is placed anywhere in the window, not always at its start.
    assert max(leads) > 0.5


def test_a_long_utterance_is_cut_at_word_boundaries(cache):
    train = cache["train"]
    i = max(range(len(train)), key=lambda k: train.utts[k]["frames"])
    u = train.utts[i]
    room = u["frames"] // 2
    words = tokenizer.normalize(" ".join(w[0] for w in u["words"])).split()
    seen = set()
    for seed in range(6):
        a, b, kept = D.crop_range(u["words"], u["frames"], room, np.random.default_rng(seed))
        assert 0 < b - a <= room and kept
        kept = tokenizer.normalize(" ".join(kept)).split()
        k = next(j for j in range(len(words)) if words[j: j + len(kept)] == kept)
        first, last = u["words"][k], u["words"][k + len(kept) - 1]
        assert a <= first[1] * lr.FPS + 1 and b >= last[2] * lr.FPS - 1  # whole words inside
        seen.add(a)
    s = D.sample(train, i, np.random.default_rng(0), window=room + 8)
    assert s["frames"] <= room and tokenizer.decode(s["labels"]) == " ".join(s["words"])
    assert len(seen) > 1  # the crop moves with the draw


def test_augmented_batches_are_a_function_of_the_step(cache):
    cfg = T.TrainConfig(batch=3)
    a = T.make_batch(cfg, cache["train"], 5)
    b = T.make_batch(cfg, cache["train"], 5)
    c = T.make_batch(cfg, cache["train"], 6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    video, audio, mod, labels, lens, _ = a
    assert video.shape == (3, lr.WINDOW, lr.ROI, lr.ROI) and audio.shape == (3, lr.WINDOW * 640)
    assert {tuple(m) for m in mod.tolist()} <= {(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)}
    assert int(lens.sum()) == len(labels) and float(audio.abs().max()) <= 1.0


def test_audio_only_batches_and_features_skip_the_video(cache, tmp_path):
    cfg = T.TrainConfig(batch=3, modality="audio")
    video, audio, mod, labels, lens, _ = T.make_batch(cfg, cache["train"], 5)
    assert mod.tolist() == [[0.0, 1.0]] * 3 and int(video.abs().sum()) == 0
    assert float(audio.abs().max()) > 0.01 and int(lens.sum()) == len(labels)
    torch.manual_seed(0)
    model = lr.LipReader(lr.Dims.from_json(TINY)).eval()
    # Skipping the visual front-end where the video flag is off changes nothing, whatever
    # the video, with no video at all or some: items are scored on their own in eval mode.
    noise_video = torch.randn(3, lr.WINDOW, lr.ROI, lr.ROI)
    for flags in (mod, torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])):
        with torch.no_grad():
            full = model.features(noise_video, audio, flags)
            short = model.features(noise_video, audio, flags, skip_absent=True)
        assert torch.allclose(full, short, atol=1e-5)
    calls = []
    model.visual.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    model.features(noise_video, audio, torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]),
                   skip_absent=True)
    model.features(noise_video, audio, mod, skip_absent=True)
    assert calls == [2]  # the two items with video; none for the audio-only batch
    with pytest.raises(T.AvedgeError, match="--modality 'vision' is not one of mixed, audio"):
        T.train(T.TrainConfig(modality="vision", out=str(tmp_path / "w.safetensors")),
                progress=False)
    with pytest.raises(T.AvedgeError, match="--snr-min 25 must be below 20 dB"):
        T.train(T.TrainConfig(snr_min=25, out=str(tmp_path / "w.safetensors")),
                progress=False)
    # The augmentation's noise never goes below snr_min: at snr_min 19.99 the residual
    # beside the (gain-scaled) speech is ~1 % of it.
    x = cache["train"].pcm(0)[: 16000].astype(np.float32)
    for seed in range(6):
        y = D.augment_audio(x, cache["train"], "none", np.random.default_rng(seed), 19.99)
        g = float(np.dot(y, x) / np.dot(x, x))
        assert np.linalg.norm(y - g * x) <= 0.12 * np.linalg.norm(g * x)


def test_audio_pretraining_scores_audio_only(bank, tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = T.TrainConfig(corpus=str(bank), out=str(out), steps=2, batch=2, warmup=1,
                        eval_every=2, eval_n=2, threads=1, dims=dict(TINY), modality="audio")
    rec = T.train(cfg, progress=False, log=lambda m: None)
    assert rec["steps"] == 2 and rec["config"]["modality"] == "audio"
    assert set(rec["history"][-1]["val"]) == {"audio"}


def test_natural_share_of_the_windows(cache, tmp_path):
    import dataclasses

    train = cache["train"]
    # Mark one utterance as a neural voice's: the share draws it that often.
    utts = [dict(u, synth="kokoro" if i == 0 else "espeak") for i, u in enumerate(train.utts)]
    mixed = dataclasses.replace(train, utts=utts)
    rng = np.random.default_rng(0)
    for share in (0.0, 0.25, 0.8):
        items = T.draw_items(mixed, 4000, share, rng)
        got = float(np.mean(items == 0))
        want = share if share else 1 / len(utts)
        assert abs(got - want) < 0.03, (share, got)
    with pytest.raises(T.AvedgeError, match="--natural-share 1.5 is a share"):
        T.train(T.TrainConfig(natural_share=1.5, out=str(tmp_path / "w.safetensors")),
                progress=False)
    with pytest.raises(T.AvedgeError, match="--voice-aug -1 scales"):
        T.train(T.TrainConfig(voice_aug=-1, out=str(tmp_path / "w.safetensors")),
                progress=False)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_voice_channel_changes_the_sound_not_the_timing(cache):
    x = cache["train"].pcm(0)[: 32000].astype(np.float32)
    assert D.voice_channel(x, np.random.default_rng(0), 0.0) is x
    changed = 0
    for seed in range(4):
        y = D.voice_channel(x, np.random.default_rng(seed), 3.0)  # every change likely
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        changed += not np.allclose(y, x, atol=1e-3)
        # Same timing: the loudness envelopes (40 ms frames) line up within a frame.
        a, b = (np.log(np.mean(z[: len(z) // 640 * 640].reshape(-1, 640) ** 2, 1) + 1e-8)
                for z in (x, y))
        a, b = a - a.mean(), b - b.mean()
        lags = range(-5, 6)
        best = max(lags, key=lambda k: float(np.dot(a[5:-5], np.roll(b, -k)[5:-5])))
        assert abs(best) <= 1, best  # a room's tail may pull it one frame late
    assert changed == 4


def test_frozen_modules_stay_as_they_were(bank, tmp_path):
    cfg = T.TrainConfig(corpus=str(bank), out=str(tmp_path / "w.safetensors"), steps=2,
                        batch=4, warmup=1, eval_every=5, threads=1, dims=dict(TINY),
                        freeze="visual.stem", ema=0.0)
    T.train(cfg, progress=False, log=lambda m: None)
    torch.manual_seed(cfg.seed)  # the trainer's fresh initialisation
    start = lr.LipReader(lr.Dims.from_json(TINY)).state_dict()
    end = lr.load_weights(cfg.out).state_dict()
    stem = [k for k in start if k.startswith("visual.stem.")]
    assert stem and all(torch.equal(start[k], end[k]) for k in stem)  # BN statistics too
    assert not torch.equal(start["visual.cnn.0.0.weight"], end["visual.cnn.0.0.weight"])
    with pytest.raises(T.AvedgeError, match="--freeze visual.stm: no such module"):
        T.train(T.TrainConfig(**{**cfg.__dict__, "freeze": "visual.stm", "out": str(
            tmp_path / "x.safetensors")}), progress=False)


def test_training_writes_weights_and_record_and_resumes(bank, cache, tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = T.TrainConfig(corpus=str(bank), out=str(out), steps=3, batch=2, warmup=1,
                        eval_every=2, eval_n=2, threads=1, dims=dict(TINY))
    logs = []
    rec = T.train(cfg, progress=False, log=logs.append)
    assert rec["steps"] == 3 and out.is_file() and out.with_suffix(".ckpt.pt").is_file()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["steps"] == 3 and saved["corpus"]["train"]["utterances"] == len(cache["train"])
    assert [h["step"] for h in saved["history"]] == [2, 3]
    assert set(saved["history"][0]["val"]) == {"video", "audio", "both"}
    assert 0.0 <= saved["history"][0]["val_ema"]["both"]["rate4"]["wer"]
    model = lr.load_weights(out)
    assert model.dims == lr.Dims.from_json(TINY)

    rec = T.train(T.TrainConfig(**{**cfg.__dict__, "steps": 5}), progress=False,
                  log=logs.append)
    assert rec["steps"] == 5 and rec["sessions"] == 2
    assert any("resuming" in m and "step 3" in m for m in logs)

    res = T.final_eval(cfg, n=2)  # the test split: held-out voices and faces
    assert set(res["clean"]) == {"video", "audio", "both"}
    assert set(res["clean"]["both"]) == {f"rate{r}" for r in lr.RATES}
    assert set(res["babble_-5db"]) == {"audio", "both"}
    entry = res["babble_0db"]["both"]["rate2"]
    assert 0.0 <= entry["wer"] and 0.0 <= entry["wer_lexicon"] and 0.0 <= entry["wer_grammar"]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["eval"]["clean"] == res["clean"] and saved["steps"] == 5


def test_ctc_loss_falls_on_a_repeated_batch(cache):
    torch.manual_seed(0)
    model = lr.LipReader(lr.Dims.from_json({**TINY, "dropout": 0.0}))
    video, audio, mod, labels, lens, _ = T.make_batch(T.TrainConfig(batch=2), cache["train"], 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = T.ctc_loss(model, model.features(D.normalise(video), audio, mod), labels, lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < 0.6 * losses[0]


def test_padding_frames_get_blank_with_the_silence_blank_loss(cache):
    """The frames a window pads around its clip are marked, hold silence, and the
    silence-blank loss (what CTC alone leaves free: when to emit) makes them blank."""
    split = cache["train"]
    rng = np.random.default_rng(3)
    samples = [D.sample(split, i % len(split), rng) for i in range(3)]
    video, audio, mod, labels, lens, pad = D.collate(samples, padding=True)
    t = np.arange(lr.WINDOW)
    for s, p in zip(samples, pad.numpy()):
        np.testing.assert_array_equal(p, (t < s["lead"]) | (t >= s["lead"] + s["frames"]))
    frames = audio.reshape(3, lr.WINDOW, lr.HOP_SAMPLES)
    assert bool(pad.any()) and float(frames[pad].abs().max()) == 0.0
    assert float(frames[~pad].abs().max()) > 0.01

    torch.manual_seed(0)
    start = lr.LipReader(lr.Dims.from_json({**TINY, "dropout": 0.0}))
    feats = start.features(D.normalise(video), audio, mod)
    plain = T.ctc_loss(start, feats, labels, lens)
    extra = T.ctc_loss(start, feats, labels, lens, pad, 2.0) - plain
    quiet = pad.repeat_interleave(lr.OUTPUTS_PER_FRAME, dim=1)
    want = sum(-2.0 * start.decode_features(feats, r)[..., 0][quiet].sum() / 3 for r in lr.RATES)
    torch.testing.assert_close(extra, want)

    blank = {}
    for weight in (0.0, 5.0):
        model = lr.LipReader(start.dims)
        model.load_state_dict(start.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(12):
            loss = T.ctc_loss(model, model.features(D.normalise(video), audio, mod), labels,
                              lens, pad, weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            lp = model.decode_features(model.features(D.normalise(video), audio, mod), 1)
        blank[weight] = float(lp[..., 0][quiet].exp().mean())
    assert blank[5.0] > blank[0.0] + 0.05, blank
    with pytest.raises(T.AvedgeError, match="--silence-blank -1 weighs a loss"):
        T.check_config(T.TrainConfig(silence_blank=-1))


def test_wer_and_lexicon():
    assert T.wer(["bin blue at f two now"], ["bin blue at f two now"]) == 0.0
    assert T.wer(["bin blue at f"], ["bin red f"]) == 0.5
    assert T.word_errors(["a", "b", "c", "d"], ["a", "x", "c"]) == 2
    lex = D.corpus_lexicon()
    assert lex == sorted(set(lex)) and {"bin", "fisherman", "z", "sunday"} <= set(lex)
    assert all(w == tokenizer.normalize(w) for w in lex)


def test_schedule_anneals_by_steps_or_by_training_time():
    cfg = T.TrainConfig(steps=1000, warmup=10, lr=1e-3)
    assert T.lr_at(cfg, 0) == pytest.approx(1e-4) and T.lr_at(cfg, 9) == pytest.approx(1e-3)
    assert T.lr_at(cfg, 1000) == pytest.approx(5e-5)
    assert T.lr_at(cfg, 100, seconds=3600) > 9e-4  # no time limit: by steps only
    timed = T.TrainConfig(steps=1000, warmup=10, lr=1e-3, anneal_minutes=60)
    assert T.lr_at(timed, 100, seconds=3600) == pytest.approx(5e-5)
    assert T.lr_at(timed, 100, seconds=1800) == pytest.approx(T.lr_at(cfg, 505), rel=1e-6)
    assert T.lr_at(timed, 900, seconds=60) == pytest.approx(T.lr_at(cfg, 900))


def test_the_shipped_reader_emits_where_the_speech_is(cache):
    """Characters come out when they are said: speech placed 24 frames later in the window
    moves the emissions 24 frames later, the first letter included. (The weights before
    session 14's silence-blank loss emitted a sentence's first letter at frame 0 however
    late the speech began: CTC allows it, the order being right.)"""
    from avedge.runtime.decoding import ctc

    model = lr.build()
    test = cache["test"]
    i = min(range(len(test)), key=lambda k: test.utts[k]["frames"])
    w = D.sample(test, i, None)
    shift = 24
    assert w["frames"] + shift <= lr.WINDOW
    late = np.concatenate([np.zeros(shift * lr.HOP_SAMPLES, np.float32),
                           w["audio"][: -shift * lr.HOP_SAMPLES]])
    audio = torch.from_numpy(np.stack([w["audio"], late]))
    with torch.no_grad():
        lp = model(torch.zeros(2, lr.WINDOW, lr.ROI, lr.ROI), audio,
                   torch.tensor([[0.0, 1.0]] * 2)).numpy()
    assert ctc.greedy(lp[0], list(tokenizer.VOCAB)).text.strip()
    # Mean video frame of the non-blank emissions (50 Hz outputs -> 25 Hz frames).
    emitted = [np.flatnonzero(x.argmax(-1) != 0) / lr.OUTPUTS_PER_FRAME for x in lp]
    assert abs(emitted[1].mean() - emitted[0].mean() - shift) <= 2, emitted
    assert emitted[1][0] >= emitted[0][0] + shift - 2, emitted  # nothing before the speech


def test_visual_features_are_the_front_end_on_the_plain_rois(cache, monkeypatch):
    from avedge.models.lipreader import visual_features as VF

    torch.manual_seed(0)
    model = lr.LipReader(lr.Dims.from_json(TINY)).eval()
    split = cache["train"]
    vf = VF.build(model.visual, split, variants=2, log=lambda m: None)
    assert vf.feats.shape == (len(split.frames), 2, TINY["d_model"])
    with torch.no_grad():
        ref = model.visual(D.normalise(torch.from_numpy(np.array(split.video(0))))[None])[0]
    got = torch.from_numpy(np.asarray(vf.of(split, 0), np.float32))
    torch.testing.assert_close(got[:, 0], ref, atol=2e-3 * float(ref.abs().max()), rtol=1e-2)
    # The second variant: the front-end on an augmented copy, seeded by the utterance.
    frames = np.asarray(split.video(0))
    aug = D.augment_video(frames, np.random.default_rng([0, split.utts[0]["frame"], 1]))
    assert np.abs(aug.astype(int) - frames).mean() > 5
    with torch.no_grad():
        ref_aug = model.visual(D.normalise(torch.from_numpy(aug))[None])[0]
    torch.testing.assert_close(got[:, 1], ref_aug, atol=2e-3 * float(ref.abs().max()),
                               rtol=1e-2)
    # Built once: opened again without computing; other front-end weights, other features.
    monkeypatch.setattr(D, "augment_video", lambda *a: pytest.fail("computed again"))
    assert VF.build(model.visual, split, variants=2).root == vf.root
    monkeypatch.undo()
    with torch.no_grad():
        model.visual.proj.bias += 1.0
    assert VF.features_dir(split, model.visual) != vf.root

    # A window carries the features padded like its frames, and the model reads them as
    # it reads the front-end's output: the same fused sequence away from the edges.
    plain = D.sample(split, 0, None)
    with_feats = D.sample(split, 0, None, visual=vf.of(split, 0))
    assert "video" not in with_feats and with_feats["visual"].shape == (lr.WINDOW, 16)
    np.testing.assert_array_equal(with_feats["audio"], plain["audio"])
    n = plain["frames"]
    torch.manual_seed(0)
    model = lr.LipReader(lr.Dims.from_json(TINY)).eval()
    both = torch.ones(1, 2)
    with torch.no_grad():
        a = model.features(D.normalise(torch.from_numpy(plain["video"]))[None],
                           torch.from_numpy(plain["audio"])[None], both)
        b = model.features(torch.from_numpy(with_feats["visual"])[None],
                           torch.from_numpy(plain["audio"])[None], both, visual_given=True)
    assert float(a.abs().max()) > 0.1
    torch.testing.assert_close(b[0, 2: n - 2], a[0, 2: n - 2], atol=2e-2, rtol=2e-2)
    cfg = T.TrainConfig(batch=3, visual_features=True)
    video, _, _, _, _, _ = T.make_batch(cfg, split, 7, visual=vf)
    assert video.dtype == torch.float32 and video.shape == (3, lr.WINDOW, 16)


def test_training_on_visual_features_keeps_the_front_end(bank, tmp_path):
    cfg = T.TrainConfig(corpus=str(bank), out=str(tmp_path / "w.safetensors"), steps=2,
                        batch=4, warmup=1, eval_every=5, threads=1, dims=dict(TINY),
                        visual_features=True, ema=0.0)
    rec = T.train(cfg, progress=False, log=lambda m: None)
    torch.manual_seed(cfg.seed)  # the trainer's fresh initialisation
    start = lr.LipReader(lr.Dims.from_json(TINY)).state_dict()
    end = lr.load_weights(cfg.out).state_dict()
    visual = [k for k in start if k.startswith("visual.")]
    assert visual and all(torch.equal(start[k], end[k]) for k in visual)
    assert not torch.equal(start["fuse.weight"], end["fuse.weight"])
    assert rec["visual_features"]["variants"] == 2
    fp = rec["visual_features"]["fingerprint"]
    assert (Path(rec["corpus"]["cache"]) / "train" / f"visual-{fp}" / "features.npy").is_file()
    with pytest.raises(T.AvedgeError, match="--visual-features .* --modality mixed"):
        T.train(T.TrainConfig(**{**cfg.__dict__, "modality": "audio", "out": str(
            tmp_path / "x.safetensors")}), progress=False)
    assert not (tmp_path / "x.safetensors").exists()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def test_video_path_rois_come_through_h264_and_the_tracker(bank, cache, tmp_path,
                                                           monkeypatch):
    """The video-path ROIs: same frames and offsets as the rendered cache, the same mouth
    (close to the rendered ROI, not equal: H.264, resampling and the tracker's box), drawn
    per utterance; a build stopped part way goes on where it stopped."""
    from avedge.models.lipreader import video_path as VP

    split = cache["val"]
    assert VP.open_rois(split) is None
    monkeypatch.setattr(VP, "COMMIT_EVERY", 1)
    b = voicebank.open_bank(bank)
    VP.build(b, split, stop_after=1e-9)  # one utterance, then stop
    meta = json.loads((split.root / VP.FOLDER / "meta.json").read_text())
    assert meta["done"] == 1 < len(split) and VP.open_rois(split) is None
    first = np.array(np.load(split.root / VP.FOLDER / "frames.npy", mmap_mode="r")
                     [: split.utts[0]["frames"]])
    VP.build(b, split)
    video = VP.open_rois(split)
    assert video is not None and video.frames.shape == split.frames.shape
    np.testing.assert_array_equal(np.asarray(video.video(0)), first)  # not redone
    for i in range(len(split)):
        got, rendered = np.asarray(video.video(i)).astype(int), np.asarray(split.video(i))
        assert np.abs(got - rendered).mean() > 1.0  # the path changed the pixels
        # ...and framed the same mouth: closer to the rendered ROIs than those ROIs are to
        # themselves shifted by 8 px (a crop off the mouth fails this; measured 0.74-0.79
        # against 0.49-0.50)
        shifted = np.roll(rendered, 8, axis=2)
        assert _corr(got, rendered) > _corr(shifted, rendered) + 0.1, i
        # the mouth moves in both: frame-to-frame changes correlate
        mg = np.abs(np.diff(got, axis=0)).mean((1, 2))
        mr = np.abs(np.diff(rendered, axis=0)).mean((1, 2))
        assert np.corrcoef(mg, mr)[0, 1] > 0.5
    draws = json.loads((split.root / VP.FOLDER / "meta.json").read_text())["draws"]
    assert len(draws) == len(split) and all(d[0] != -1 for d in draws)  # the face was found
    assert [list(VP.draw(np.random.default_rng([0, u["frame"]]))) for u in split.utts] == \
        [[d[0], pytest.approx(d[1], abs=1e-3), pytest.approx(d[2], abs=1e-2)] for d in draws]
    monkeypatch.setattr(VP, "PATH_VERSION", VP.PATH_VERSION + 1)  # the tracker changed
    assert VP.open_rois(split) is None
    monkeypatch.undo()
    # windows read the audio of the split and the frames of the video path
    w, w0 = D.sample(video, 0, None), D.sample(split, 0, None)
    np.testing.assert_array_equal(w["audio"], w0["audio"])
    assert w["labels"] == w0["labels"] and not np.array_equal(w["video"], w0["video"])


def test_training_on_video_path_features_adds_a_variant(bank, tmp_path):
    cfg = T.TrainConfig(corpus=str(bank), out=str(tmp_path / "w.safetensors"), steps=2,
                        batch=4, warmup=1, eval_every=5, threads=1, dims=dict(TINY),
                        visual_features=True, video_path=True, ema=0.0)
    rec = T.train(cfg, progress=False, log=lambda m: None)
    vf = rec["visual_features"]
    assert vf["variants"] == 3 and [p["variants"] for p in vf["parts"]] == [2, 1]
    assert vf["parts"][1]["folder"].endswith("-video")
    assert sorted(rec["corpus"]["video_path"]) == ["train", "val"]  # val: what it scores
    # without features, half the windows read the video-path frames
    data = T.CacheData(cfg, log=lambda m: None)
    train, video = data.split("train"), data.video_split("train")
    plain_cfg = T.TrainConfig(batch=16, seed=3)
    mixed = T.make_batch(plain_cfg, train, 0, video_cache=video)[0]
    alone = T.make_batch(plain_cfg, train, 0)[0]
    same = [bool(torch.equal(mixed[k], alone[k])) for k in range(16)]
    assert 2 <= same.count(False) <= 14
    with pytest.raises(T.AvedgeError, match="--video-path trains on video"):
        T.check_config(T.TrainConfig(modality="audio", video_path=True))
