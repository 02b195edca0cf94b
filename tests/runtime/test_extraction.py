"""Extraction at run time: audio files in/out, the pipeline over a real artifact, the
CLI (extract, listen's callback path) and the bad inputs issue #4 lists."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from avedge.models.speech_extractor import model as se
from avedge.runtime.audio_io import read_audio, resample, write_audio
from avedge.runtime.errors import InputError
from avedge.runtime.pipelines.extraction import (
    DuplexProcessor,
    Extraction,
    fit_enrollment,
    si_sdr_db,
)

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=3, dilation_cycle=2,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))
SR = 16000


def speechy(seconds, f0=150.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
    env = np.repeat(rng.random(len(t) // 1600 + 1) > 0.3, 1600)[: len(t)]
    return (0.1 * x * env + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tiny_extractor):
    """A tiny random extractor exported for `cpu` (.pte + .onnx) as a composite artifact
    (tests/runtime/conftest.py: the same TINY dims, shared with the layering tests)."""
    model, out = tiny_extractor
    assert model.dims == TINY
    return model, out


# ----------------------------------------------------------------------------- audio I/O

@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (8000, 16000), (16000, 48000),
                                              (22050, 16000)])
def test_resample_is_accurate_on_a_sine(rate_in, rate_out):
    t = np.arange(rate_in) / rate_in
    y = resample(np.sin(2 * np.pi * 440 * t), rate_in, rate_out)
    assert len(y) == rate_out
    ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / rate_out)
    assert np.abs(y - ref)[300:-300].max() < 1e-3


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_read_any_depth_and_stereo_at_any_rate(tmp_path, subtype):
    x = speechy(1.0)
    x44 = resample(x, SR, 44100)
    stereo = np.stack([x44, x44], axis=1)
    p = tmp_path / "in.wav"
    sf.write(p, stereo, 44100, subtype=subtype)
    clip = read_audio(p)
    assert clip.channels == 2 and clip.source_rate == 44100 and clip.sample_rate == SR
    assert abs(len(clip.samples) - SR) <= 1
    tol = 0.05 if subtype == "PCM_U8" else 5e-3  # two band-limited resamplings
    assert np.abs(clip.samples[200:-200] - x[200:len(clip.samples) - 200]).max() < tol


def test_bad_files_are_refused_with_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(InputError, match="empty"):
        read_audio(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(InputError, match="cannot read"):
        read_audio(junk)
    nan = tmp_path / "nan.wav"
    x = speechy(0.5)
    x[4000] = np.nan
    sf.write(nan, x, SR, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN/inf"):
        read_audio(nan)


def test_clipping_is_measured(tmp_path):
    p = tmp_path / "clip.wav"
    sf.write(p, np.clip(speechy(1.0) * 40, -1, 1), SR)
    assert read_audio(p).clipped_fraction > 0.05
    sf.write(p, speechy(1.0), SR)
    assert read_audio(p).clipped_fraction == 0.0


def test_write_is_atomic_and_resamples(tmp_path):
    p = tmp_path / "o.wav"
    write_audio(p, speechy(1.0), SR, rate=48000, subtype="PCM_24")
    info = sf.info(p)
    assert (info.samplerate, info.frames, info.subtype) == (48000, 48000, "PCM_24")
    assert [f.name for f in tmp_path.iterdir()] == ["o.wav"]  # no temporary left behind
    before = p.read_bytes()
    with pytest.raises(ValueError, match="subtype"):
        write_audio(p, speechy(1.0), SR, subtype="NOT_A_SUBTYPE")
    assert p.read_bytes() == before  # a failed write leaves the old file intact
    assert [f.name for f in tmp_path.iterdir()] == ["o.wav"]


def test_numpy_fit_enrollment_matches_the_model_side():
    rng = np.random.default_rng(0)
    for n in (20000, 80000, 130000):
        x = rng.standard_normal(n).astype(np.float32) * np.linspace(0.1, 1, n, dtype=np.float32)
        ref = se.fit_enrollment(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(fit_enrollment(x, se.ENROLL_SAMPLES), ref)


# ----------------------------------------------------------------------------- pipeline

@pytest.mark.parametrize("backend", ["executorch", "onnxruntime"])
def test_stream_through_artifact_equals_whole_utterance(tiny, backend):
    model, art = tiny
    ex = Extraction.from_artifact(art, backend=backend)
    enroll = speechy(2.0, f0=140)
    emb = ex.enroll(enroll)
    with torch.no_grad():
        ref_emb = model.speaker_encoder(se.fit_enrollment(torch.from_numpy(enroll))[None])
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-4)
    mix = speechy(1.3, f0=140) + speechy(1.3, f0=230, seed=1)
    res = ex.process(mix, emb, block=1000)  # blocks that are not whole chunks: buffered
    with torch.no_grad():
        whole = se.extract(model, torch.from_numpy(mix)[None], ref_emb)[0].numpy()
    assert res.samples.shape == mix.shape
    assert np.abs(whole).max() > 1e-3
    assert np.abs(res.samples - whole).max() <= 1e-4
    stats = res.stats()
    assert stats["chunks"] == -(-(len(mix) + 64) // 128)
    assert 0 < stats["compute_ms_median"] <= stats["compute_ms_p90"]


def test_enrollment_checks(tiny):
    ex = Extraction.from_artifact(tiny[1], backend="onnxruntime")
    with pytest.raises(InputError, match="at least 1 s"):
        ex.enroll(speechy(0.5))
    with pytest.raises(InputError, match="silent"):
        ex.enroll(np.zeros(SR * 2, np.float32))
    bad = speechy(2.0)
    bad[10] = np.inf
    with pytest.raises(InputError, match="NaN/inf"):
        ex.enroll(bad)
    assert ex.enroll(speechy(9.0)).shape == (1, TINY.speaker.emb_dim)  # long: loudest 5 s
    emb = ex.enroll(speechy(2.0))
    silent = ex.process(np.zeros(SR, np.float32), emb)
    assert np.abs(silent.samples).max() < 1e-6  # a silent mixture gives silence back


@pytest.mark.parametrize("block", [128, 100, 256])
def test_duplex_callback_from_file_matches_offline(tiny, block):
    """The microphone path without hardware: the pyaudio callback fed from a file."""
    pytest.importorskip("pyaudio")
    ex = Extraction.from_artifact(tiny[1], backend="onnxruntime")
    emb = ex.enroll(speechy(2.0))
    mix = speechy(1.0, f0=200)
    offline = ex.process(mix, emb).samples
    proc = DuplexProcessor(ex, emb, block)
    outs = []
    for s in range(0, len(mix) - block + 1, block):
        data, _flag = proc.pyaudio_callback(mix[s:s + block].tobytes(), block, None, 0)
        assert len(data) == 4 * block  # always a full block back
        outs.append(np.frombuffer(data, np.float32))
    played = np.concatenate(outs)
    lag = proc.latency_samples
    n = len(played) - lag
    np.testing.assert_allclose(played[lag:], offline[:n], atol=1e-5)
    assert proc.underruns == 0 and proc.blocks == len(outs)
    assert proc.stats()["deadline_misses"] == proc.misses


def test_ambient_mix_adds_the_input_at_the_same_samples(tiny):
    """--ambient-db: output = the extractor's output + gain x the input, sample-aligned, on
    the file path and through a stream fed odd blocks, a refused block changing nothing."""
    off = Extraction.from_artifact(tiny[1], backend="onnxruntime")
    on = Extraction.from_artifact(tiny[1], backend="onnxruntime", ambient_db=-20.0)
    emb = off.enroll(speechy(2.0))
    mix = speechy(1.0, f0=200)
    base, mixed = off.process(mix, emb).samples, on.process(mix, emb).samples
    assert len(mixed) == len(base) == len(mix)
    np.testing.assert_allclose(mixed - base, 0.1 * mix, atol=1e-5)
    stream, pieces = on.stream(emb), []
    for s, e in [(0, 333), (333, 1000), (1000, 1001), (1001, len(mix))]:
        stream.accept(mix[s:e])
        if s == 333:
            with pytest.raises(InputError):
                stream.accept(np.full(50, np.nan, np.float32))
        pieces.append(stream.read().reshape(-1))
    pieces.append(stream.finish().reshape(-1))
    np.testing.assert_allclose(np.concatenate(pieces), mixed, atol=1e-6)
    assert stream.chunks_run > 0  # the Stream's own attributes reach through


def test_si_sdr_db():
    ref = speechy(1.0)
    assert si_sdr_db(ref * 0.5, ref) > 60
    noise = np.random.default_rng(0).standard_normal(len(ref)).astype(np.float32)
    assert abs(si_sdr_db(ref + noise * np.std(ref), ref)) < 0.5


# ----------------------------------------------------------------------------- CLI

def avedge(*args):
    return subprocess.run([sys.executable, "-m", "avedge", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_extract_json_rate_and_bad_inputs(tiny, tmp_path):
    _, art = tiny
    enroll, mix, ref = tmp_path / "e.wav", tmp_path / "m.wav", tmp_path / "r.wav"
    sf.write(enroll, speechy(2.0), SR)
    clean = speechy(1.5)
    sf.write(ref, clean, SR)
    m44 = resample(clean + speechy(1.5, f0=260, seed=3), SR, 44100)
    sf.write(mix, np.stack([m44, m44], 1), 44100, subtype="PCM_24")  # stereo 24-bit 44.1k
    out = tmp_path / "o.wav"
    r = avedge("extract", "--enroll", enroll, "--input", mix, "--out", out, "--artifact", art,
               "--reference", ref, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert set(rep) == {"chunks", "compute_ms_median", "compute_ms_p90", "rtf", "si_sdr_db"}
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_24")
    assert abs(info.frames - len(m44)) <= 2
    r = avedge("extract", "--enroll", enroll, "--input", mix, "--out", out, "--artifact", art,
               "--json")
    assert r.returncode == 0 and "si_sdr_db" not in json.loads(r.stdout)
    short = tmp_path / "short.wav"
    sf.write(short, speechy(0.4), SR, subtype="PCM_U8")
    for bad, needle in [(("--enroll", short, "--input", mix), "at least 1 s"),
                        (("--enroll", enroll, "--input", tmp_path / "x.wav"), "does not exist"),
                        (("--enroll", enroll, "--input", mix, "--ambient-db", "3"), "below 0 dB"),
                        (("--enroll", enroll, "--input", mix, "--ambient-db", "x"), "or 'off'")]:
        r = avedge("extract", *bad, "--out", tmp_path / "bad.wav", "--artifact", art)
        assert r.returncode == 2 and needle in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1  # one line, no traceback
        assert not (tmp_path / "bad.wav").exists()


def test_cli_listen_through_portaudio_on_an_alsa_null_device(tiny, tmp_path):
    """`avedge listen` end to end through pyaudio/PortAudio, no sound card: ALSA's null
    plugin as the default device, the 'microphone' fed from a file (--from-file)."""
    pytest.importorskip("pyaudio")
    from pathlib import Path

    alsa = Path("/usr/share/alsa/alsa.conf")
    if not alsa.exists():
        pytest.skip("no ALSA configuration on this machine (needs alsa-lib)")
    conf = tmp_path / "asound.conf"
    conf.write_text(f"<{alsa}>\npcm.!default {{ type null }}\n")
    enroll, mix, played = tmp_path / "e.wav", tmp_path / "m.wav", tmp_path / "played.wav"
    sf.write(enroll, speechy(2.0), SR)
    sf.write(mix, speechy(0.75, f0=210), SR)
    env = {**__import__("os").environ, "ALSA_CONFIG_PATH": str(conf)}
    r = subprocess.run([sys.executable, "-m", "avedge", "listen", "--enroll", str(enroll),
                        "--artifact", str(tiny[1]), "--from-file", str(mix), "--save",
                        str(played), "--json"], capture_output=True, text=True, timeout=300,
                       env=env, check=False)
    if r.returncode == 2 and "cannot open the audio device" in r.stderr:
        pytest.skip(f"PortAudio found no ALSA null device: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    n_blocks = -(-int(0.75 * SR) // 128)
    assert rep["blocks"] >= n_blocks and rep["underruns"] == 0
    assert sf.info(played).frames >= n_blocks * 128
