"""The lip-reading task (runtime/pipelines/lipread.py) on a tiny untrained artifact and
videos of the corpus face: result structure, windowing and stitching, modalities, and that
its greedy output is exactly what a direct session run on the same inputs gives.

The tiny artifact runs on onnxruntime: its ExecuTorch graphs give NaN on exact silence
(padding, video-only; the audio front-end's LayerNorm over a constant log-mel frame),
which the task refuses in one line (test_nan_output_is_refused_in_one_line)."""

from __future__ import annotations

import numpy as np
import pytest
from avedge.runtime.errors import ArtifactError, InputError
from avedge.runtime.pipelines import lipread as L

BACKEND = "onnxruntime"
TINY = {"stem_channels": 4, "cnn_channels": (8, 8, 8), "d_model": 16, "heads": 2, "ffn": 16,
        "layers": 1}


def tiny_lipreader(tmp_path_factory):
    """A tiny untrained lip reader exported for cpu, once per test session (shared with
    tests/test_cli_lipread.py through the session's base temp folder)."""
    out = tmp_path_factory.getbasetemp() / "lipreader-tiny-cpu"
    if not (out / "manifest.json").exists():
        import torch
        from avedge.models.lipreader import Dims, LipReader, example_inputs

        from avedge.api import export

        torch.manual_seed(0)
        model = LipReader(Dims(**TINY)).eval()
        for head in model.heads:  # larger logits: greedy emits characters, not only blanks
            torch.nn.init.normal_(head.weight, std=2.0)
        export(model, "cpu", out, family="lipreader", example_inputs=example_inputs(model),
               measure=False)
    return out


def face_frames(n: int, seed: int = 0) -> np.ndarray:
    """(n, 512, 512, 3) frames of the corpus face saying a viseme sequence."""
    from avedge.models.corpus.face import FaceVariation
    from avedge.models.corpus.render import make_speaker, render_frames
    from avedge.models.corpus.visemes import VISEMES

    keys = sorted(VISEMES)
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, len(keys), n // 3 + 1)
    poses = np.stack([VISEMES[keys[seq[i // 3]]][0] for i in range(n)]).astype(np.float32)
    return np.stack(list(render_frames(make_speaker(FaceVariation()), poses)))


def tone(frames: int, seconds_extra: float = 0.0, sr: int = 16000) -> np.ndarray:
    n = int(frames * 640 + seconds_extra * sr)
    return (0.2 * np.sin(2 * np.pi * 220 * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory):
    return tiny_lipreader(tmp_path_factory)


@pytest.fixture(scope="module")
def frames30():
    return face_frames(30)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames30):
    from avedge.runtime.video_io import write_video

    d = tmp_path_factory.mktemp("clips")
    return {"av": write_video(d / "av.mp4", frames30, 25, audio=tone(30), rate=16000),
            "mute": write_video(d / "mute.mp4", frames30, 25), "dir": d}


# ----------------------------------------------------------------------------- windows

def test_hop_is_half_a_window_on_the_largest_rate():
    assert L.window_hop(100, 4) == 48
    assert L.window_hop(100, 1) == 50
    assert L.window_starts(30, 100, 48) == [0]
    assert L.window_starts(100, 100, 48) == [0]
    assert L.window_starts(101, 100, 48) == [0, 48]
    assert L.window_starts(250, 100, 48) == [0, 48, 96, 144, 192]


def test_stitch_takes_each_frame_from_its_most_central_window():
    # window 8, hop 4 over 16 frames: windows at 0, 4, 8. Frame 5 is 2 from window 0's
    # edge and 1 from window 1's; frame 6 the other way round; frame 10 likewise.
    outs = [np.full((8, 1), k, np.float32) for k in range(3)]
    got = L.stitch(outs, [0, 4, 8], 16)[:, 0]
    np.testing.assert_array_equal(got, [0] * 6 + [1] * 4 + [2] * 6)


def test_stitch_recovers_the_truth_when_windows_are_wrong_near_their_edges():
    rng = np.random.default_rng(0)
    n, window, hop = 220, 100, 48
    truth = rng.standard_normal((n, 5)).astype(np.float32)
    starts = L.window_starts(n, window, hop)
    assert starts == [0, 48, 96, 144]
    outs = []
    for s in starts:
        w = np.concatenate([truth, rng.standard_normal((window, 5))])[s: s + window].copy()
        if s > 0:
            w[:20] = 99.0  # a left edge with too little context (not the clip's start)
        w[80:] = -99.0  # every right edge (the last window's is padding past the clip)
        outs.append(w)
    np.testing.assert_array_equal(L.stitch(outs, starts, n), truth)


def test_lexicon_words_are_normalised_like_the_tokenizer():
    from avedge.models.lipreader.tokenizer import normalize

    text = "Bin  BLUE, at f2 now!\n'tis don't o'clock Café naïve rock-n-roll bin"
    assert L.normalize_words(text) == list(dict.fromkeys(normalize(text).split()))
    assert L.normalize_words("123 -- ...") == []


# ----------------------------------------------------------------------------- the task

def test_result_and_greedy_output_equal_a_direct_session_run(artifact, clip):
    from avedge.runtime import load
    from avedge.runtime.decoding import ctc
    from avedge.runtime.video_io import read_video
    from avedge.runtime.vision.roi import crop_rois, normalize
    from avedge.runtime.vision.track import track_mouth

    res = L.lipread(artifact, clip["av"], beam=False, backend=BACKEND)
    assert set(res) >= {"text", "words", "rate", "modality", "rtf", "ms", "frames",
                        "frames_interpolated", "finder", "backend", "notes",
                        "audio_video_mismatch_s"}
    assert set(res["ms"]) == {"decode", "face_roi", "model", "search"}
    assert all(v > 0 for k, v in res["ms"].items())
    assert (res["rate"], res["modality"], res["frames"], res["backend"]) == \
        (1, "audio-visual", 30, BACKEND)
    assert res["finder"].startswith("opencv-haar")
    assert res["frames_interpolated"] == [] and res["notes"] == []
    assert abs(res["audio_video_mismatch_s"]) <= 0.04  # AAC pads under one frame
    assert res["rtf"] == pytest.approx(sum(res["ms"].values()) / 1e3 / 1.2, rel=0.01)

    # The same clip by hand: ROIs, padding to the window, one session run, greedy.
    v = read_video(clip["av"], audio_rate=16000)
    man = load(artifact).manifest["extra"]
    rois = normalize(crop_rois(v.frames, track_mouth(v.frames)), man["roi_mean"],
                     man["roi_std"])
    video = np.concatenate([rois, np.repeat(rois[-1:], 70, axis=0)])[None]
    audio = np.zeros((1, 100 * 640), np.float32)
    audio[0, :30 * 640] = v.audio[:30 * 640]
    sess = load(artifact / "rate1", backend=BACKEND)
    lp = sess.run(video=video, audio=audio, modality=np.ones((1, 2), np.float32))["log_probs"]
    assert lp.shape[1] == 200  # two CTC frames (50 Hz) per video frame
    want = ctc.greedy(lp[0, :60], man["vocab"], separator=man["separator"], fps=50)
    assert res["text"] == want.text
    assert res["words"] == [{"word": w["word"], "start": w["start_s"], "end": w["end_s"]}
                            for w in want.words]
    assert res["text"]  # an untrained model emits characters: the comparison means something


def test_long_clip_is_read_in_windows_two_outputs_per_frame(artifact):
    from avedge.runtime import load

    sess = load(artifact / "rate4", backend=BACKEND)
    rng = np.random.default_rng(1)
    n = 130
    video = rng.standard_normal((n, 88, 88)).astype(np.float32)
    audio = (0.1 * rng.standard_normal(n * 640)).astype(np.float32)
    flags = np.ones(2, np.float32)
    lp = L.run_windows(sess, video, audio, flags, 100, 48, 640)
    assert lp.shape == (2 * n, 29)  # the graph's CTC runs at 50 Hz

    def direct(s):  # one window starting at frame s, padded as training pads
        v = np.concatenate([video, np.repeat(video[-1:], 100, axis=0)])[s: s + 100]
        a = np.concatenate([audio, np.zeros(100 * 640, np.float32)])[s * 640: (s + 100) * 640]
        return sess.run(video=v[None], audio=a[None], modality=flags[None])["log_probs"][0]

    # Frame 73 is 26 frames from window 0's edge; a frame's two outputs stay together.
    np.testing.assert_array_equal(lp[:148], direct(0)[:148])
    np.testing.assert_array_equal(lp[148:], direct(48)[52: 2 * (n - 48)])
    assert not np.array_equal(direct(0)[148:200], lp[148:200])  # the choice mattered


def test_audio_only_needs_no_face_and_counts_frames_from_the_audio(artifact):
    res = L.lipread(artifact, None, audio=tone(130, 0.01), rate=4, beam=False,
                    backend=BACKEND)
    assert (res["modality"], res["frames"], res["finder"]) == ("audio", 131, None)
    assert res["ms"]["face_roi"] == 0.0 and res["audio_video_mismatch_s"] is None
    assert all(0 <= w["start"] < w["end"] <= 131 / 25 for w in res["words"])


def test_video_off_reads_the_video_files_audio_track(artifact, clip):
    res = L.lipread(artifact, clip["av"], use_video=False, beam=False, backend=BACKEND)
    assert (res["modality"], res["finder"], res["ms"]["face_roi"]) == ("audio", None, 0.0)
    assert res["frames"] in (30, 31)  # AAC padding may add part of a frame
    with pytest.raises(InputError, match=r"mute\.mp4.*no audio track.*--audio"):
        L.lipread(artifact, clip["mute"], use_video=False, backend=BACKEND)


def test_a_missing_modality_is_fed_as_zeros_with_its_flag_off(artifact, clip, monkeypatch):
    fed = []
    real = L.run_windows

    def spy(session, video, audio, flags, *rest):
        fed.append((video.copy(), audio.copy(), np.asarray(flags).copy()))
        return real(session, video, audio, flags, *rest)

    monkeypatch.setattr(L, "run_windows", spy)
    av = L.lipread(artifact, clip["av"], beam=False, backend=BACKEND)
    vo = L.lipread(artifact, clip["av"], use_audio=False, beam=False, backend=BACKEND)
    mute = L.lipread(artifact, clip["mute"], beam=False, backend=BACKEND)
    ao = L.lipread(artifact, clip["av"], use_video=False, beam=False, backend=BACKEND)
    (v_av, a_av, f_av), (v_vo, a_vo, f_vo), (_, a_mu, f_mu), (v_ao, a_ao, f_ao) = fed
    assert (av["modality"], vo["modality"], mute["modality"], ao["modality"]) == \
        ("audio-visual", "video", "video", "audio")
    np.testing.assert_array_equal(f_av, [1, 1])
    np.testing.assert_array_equal(f_vo, [1, 0])
    np.testing.assert_array_equal(f_mu, [1, 0])
    np.testing.assert_array_equal(f_ao, [0, 1])
    assert a_av.shape == (30 * 640,) and np.abs(a_av).max() > 0.1  # the tone, aligned
    assert not a_vo.any() and not a_mu.any() and not v_ao.any()
    assert a_ao.shape[0] == v_ao.shape[0] * 640 and np.abs(a_ao).max() > 0.1
    np.testing.assert_array_equal(v_av, v_vo)  # the same ROIs whatever the audio
    assert v_av.shape == (30, 88, 88) and v_av.std() > 0.1
    assert vo["audio_video_mismatch_s"] is None and vo["notes"] == []
    assert any("no audio track" in n for n in mute["notes"])


def test_an_audio_file_of_another_length_is_fitted_and_reported(artifact, clip):
    from avedge.runtime.audio_io import write_audio

    wav = write_audio(clip["dir"] / "long.wav", tone(30, 0.5), 16000)
    res = L.lipread(artifact, clip["av"], audio=wav, beam=False, backend=BACKEND)
    assert res["modality"] == "audio-visual" and res["frames"] == 30
    assert res["audio_video_mismatch_s"] == pytest.approx(0.5, abs=0.01)
    assert any("differ by 0.500 s" in n and "trimmed" in n for n in res["notes"])


def test_lexicon_constrains_the_beam(artifact, clip):
    words = ["bin", "blue", "green", "now"]
    res = L.lipread(artifact, clip["av"], lexicon=words, backend=BACKEND)
    assert all(w["word"] in words for w in res["words"])
    free = L.lipread(artifact, clip["av"], lexicon=[], backend=BACKEND)
    assert free["text"] and set(free["text"].split()) - set(words)


def test_the_artifacts_grammar_is_the_default_and_a_word_list_or_none_replace_it():
    import importlib.util
    from pathlib import Path

    from avedge.models.lipreader import manifest_extra

    spec = importlib.util.spec_from_file_location(
        "ctc_helpers", Path(__file__).parent / "test_ctc_decoding.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    extra = {**manifest_extra(), "vocab": helpers.VOCAB, "separator": "|"}
    # A GRID command, read as it is; then the same words in an order no sentence of the
    # corpus has: the grammar reads a sentence, the word list and the free search do not.
    lp, _ = helpers.synth("place red at b four soon")
    d, constraint, notes = L.search(lp, extra, 50.0)
    assert (d.text, constraint, notes) == ("place red at b four soon", "grammar", [])
    lp, _ = helpers.synth("soon four b at red place")
    d, constraint, notes = L.search(lp, extra, 50.0)
    assert constraint == "grammar" and d.text != "soon four b at red place"
    d, constraint, _ = L.search(lp, extra, 50.0, lexicon=extra["lexicon"])
    assert (d.text, constraint) == ("soon four b at red place", "lexicon")
    d, constraint, _ = L.search(lp, extra, 50.0, lexicon=[])
    assert (d.text, constraint) == ("soon four b at red place", "none")
    # Too short for any sentence: read with the grammar's words, and said so.
    d, constraint, notes = L.search(lp[:12], extra, 50.0)
    assert constraint == "lexicon" and "too short for any sentence of the grammar" in notes[0]
    # An artifact exported before grammars shipped: its word list.
    old = {k: v for k, v in extra.items() if k != "grammar"}
    assert L.search(lp, old, 50.0)[1] == "lexicon"
    with pytest.raises(ArtifactError, match="grammar is malformed"):
        L.search(lp, {**extra, "grammar": {"forms": "bin"}}, 50.0)


def test_an_exported_lip_reader_carries_the_corpus_grammar(artifact, clip):
    from avedge.runtime.decoding.grammar import Grammar

    _, extra = L.open_rate(artifact, 1, BACKEND)
    g = Grammar.from_json(extra["grammar"])
    assert g.accepts(["bin", "blue", "at", "f", "two", "now"])
    assert set(g.words()) == set(extra["lexicon"])
    res = L.lipread(artifact, clip["av"], backend=BACKEND)
    assert res["constraint"] in ("grammar", "lexicon")
    if res["constraint"] == "grammar":  # an untrained model: it may read no sentence
        assert g.accepts(res["text"].split())
    with pytest.raises(InputError, match="a grammar or a lexicon, not both"):
        L.lipread(artifact, clip["av"], lexicon=["bin"], grammar=extra["grammar"])


def test_bad_requests_are_refused_in_one_line(artifact, clip, cpu_artifact):
    with pytest.raises(InputError, match=r"token rate 3 .*1, 2, 4"):
        L.lipread(artifact, clip["av"], rate=3, backend=BACKEND)
    with pytest.raises(InputError, match="nothing to read"):
        L.lipread(artifact, clip["av"], use_audio=False, use_video=False)
    with pytest.raises(InputError, match="nothing to read"):
        L.lipread(artifact, None)
    with pytest.raises(ArtifactError, match=r"not a lip-reader artifact.*avedge export lipreader"):
        L.lipread(cpu_artifact.path, clip["av"])


def test_nan_output_is_refused_in_one_line(artifact):
    from types import SimpleNamespace as NS

    class Nan:
        backend, path = "fake", "x"
        spec = NS(inputs=[NS(name=n) for n in ("video", "audio", "modality")],
                  outputs=[NS(name="log_probs")])

        def run(self, **_):
            return {"log_probs": np.full((1, 100, 29), np.nan, np.float32)}

    with pytest.raises(ArtifactError, match=r"NaN/inf log-probabilities for frames 0-99.*"
                                            r"--backend onnxruntime"):
        L.run_windows(Nan(), np.zeros((3, 88, 88), np.float32), np.zeros(3 * 640, np.float32),
                      np.ones(2), 100, 48, 640)


def test_frame_ranges_name_runs():
    assert L.frame_ranges([3, 4, 5, 9]) == "frames 3-5, 9"
    assert L.frame_ranges(list(range(0, 20, 2)), most=3) == "frames 0, 2, 4 and 7 more runs"
