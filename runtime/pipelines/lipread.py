"""Lip reading at run time: a video file (and/or audio) -> words with timings. Numpy only.

    >>> from avedge.runtime.pipelines.lipread import lipread
    >>> r = lipread("artifacts/lipreader-cpu", "talk.mp4", rate=4)     # doctest: +SKIP
    >>> r["text"], r["modality"], r["ms"]                              # doctest: +SKIP
    ('bin blue at f two now', 'audio-visual', {'decode': 41.0, 'face_roi': 310.2, ...})

Stages, each timed (`ms`): decode (read_video: frames resampled to the artifact's fps,
the file's audio track resampled to its sample rate; or an audio file), face_roi
(track_mouth, crop_rois, normalize with the manifest's roi_mean/roi_std), model (the
chosen rate's graph over fixed windows), search (the best sentence of the artifact's grammar,
a word-list beam, or greedy).

Windows: every graph takes exactly `window` frames. A shorter clip is padded with its last
frame repeated and silent audio (what training does); a longer one is read in overlapping
windows, `hop` = half a window rounded down to a multiple of the largest token rate (so
token boundaries fall on the same frames in every window), the last one padded the same
way; the per-frame log-probs are stitched by taking each frame from the window in which
it lies farthest from an edge (attention and convolutions see least context at edges).

Documented handling:
  - audio: the video's own track, or `audio` (a file, or a 1-D float array at the
    artifact's sample rate); sample 0 is at frame 0; padded with silence or trimmed to
    frames * hop_samples; `audio_video_mismatch_s` (audio minus video length) is reported
    and a note added when they differ by more than one frame;
  - a video without an audio track and no `audio`: video only, said in `notes`;
  - audio only (use_video=False, or no video): no face tracking; frames = audio length /
    hop_samples, rounded up;
  - a missing modality is fed as zeros with its flag 0 (modality = [video on, audio on]);
  - a face lost for some frames: the tracker interpolates, `frames_interpolated` lists
    them; no face at all: the tracker's InputError naming the frames;
  - a token rate the artifact lacks, an artifact that is not a lip reader, nothing to
    read (both modalities off): InputError / ArtifactError, one line.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from avedge.runtime.errors import ArtifactError, InputError

TASK = "lipread"
# Words of a user's lexicon: lower case, letters and apostrophes (mirrors the model's
# tokenizer.normalize, which runtime/ cannot import; a test checks that they agree).


def normalize_words(text: str) -> list[str]:
    """Text -> its words, lower case, letters and apostrophes only, first order, unique."""
    kept = "".join(c if c.isalpha() or c == "'" else " " for c in text.lower())
    words = [w.strip("'") for w in kept.split()]
    return list(dict.fromkeys(w for w in words if w and w.isascii()))


# ----------------------------------------------------------------------------- artifact

def check_lipreader(path, spec) -> dict:
    """The manifest's `extra` of a lip-reader pipeline, else ArtifactError naming what it is."""
    from avedge.runtime.manifest import PipelineManifest

    extra = getattr(spec, "extra", None) or {}
    if not isinstance(spec, PipelineManifest) or extra.get("task") != TASK:
        comps = list(spec.components) if isinstance(spec, PipelineManifest) else ["one graph"]
        raise ArtifactError(f"{path} is not a lip-reader artifact: it holds the "
                            f"{spec.family or 'unnamed'!s} family ({', '.join(comps)}); "
                            f"export one with `avedge export lipreader --target cpu --out DIR`")
    missing = [k for k in ("vocab", "separator", "fps", "sample_rate", "hop_samples", "window",
                           "rates", "roi_mean", "roi_std") if k not in extra]
    if missing:
        raise ArtifactError(f"{path}: the lip-reader manifest lacks {', '.join(missing)} in "
                            f"its extra; re-export the artifact")
    return extra


def rate_component(extra: dict, rate) -> str:
    rates = {str(k): v for k, v in extra["rates"].items()}
    if str(rate) not in rates:
        raise InputError(f"token rate {rate} is not one of this artifact's rates: "
                         f"{', '.join(sorted(rates, key=int))}")
    return rates[str(rate)]


def open_rate(artifact, rate, backend: str | None = None):
    """(session of the chosen rate, manifest extra) from an artifact directory or a loaded
    Pipeline. From a directory only that rate's graph is loaded (each holds all weights)."""
    from avedge.runtime.pipeline import Pipeline

    if isinstance(artifact, Pipeline):
        extra = check_lipreader(artifact.path, artifact.spec)
        return artifact[rate_component(extra, rate)], extra
    from avedge.runtime.loader import component_manifests, load
    from avedge.runtime.manifest import open_manifest

    path = Path(artifact)
    spec = open_manifest(path)
    extra = check_lipreader(path, spec)
    name = rate_component(extra, rate)
    component_manifests(path, spec)  # each component's manifest matches the pipeline's hash
    return load(path / spec.components[name].dir, backend=backend), extra


# ----------------------------------------------------------------------------- windows

def window_hop(window: int, max_rate: int) -> int:
    """Half a window rounded down to a multiple of the largest token rate (at least one)."""
    return max(max_rate, (window // 2) // max_rate * max_rate)


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering n frames (the last may run past the end)."""
    starts = [0]
    while starts[-1] + window < n:
        starts.append(starts[-1] + hop)
    return starts


def stitch(outputs: list[np.ndarray], starts: list[int], n: int) -> np.ndarray:
    """Per-window outputs (window, V) at `starts` -> (n, V): each frame taken from the window
    where it lies farthest from an edge (the first such window on a tie)."""
    window = outputs[0].shape[0]
    t = np.arange(n)[:, None]
    s = np.asarray(starts)[None, :]
    dist = np.minimum(t - s, s + window - 1 - t)  # < 0 where the window misses the frame
    best = dist.argmax(axis=1)
    stacked = np.stack(outputs)  # (W, window, V)
    return stacked[best, t[:, 0] - np.asarray(starts)[best]]


def run_windows(session, video: np.ndarray, audio: np.ndarray, flags: np.ndarray,
                window: int, hop: int, hop_samples: int) -> np.ndarray:
    """(F, R, R) ROIs, (F * hop_samples,) audio, (2,) flags -> (F * k, V) stitched
    log-probs, k = the graph's output frames per video frame (its output length over the
    window: 2 for the shipped lip reader, whose CTC runs at 50 Hz)."""
    n = len(video)
    starts = window_starts(n, window, hop)
    total = starts[-1] + window
    if total > n:  # the last frame repeated (a still mouth), silence: as training pads
        video = np.concatenate([video, np.repeat(video[-1:], total - n, axis=0)])
        audio = np.concatenate([audio, np.zeros((total - n) * hop_samples, audio.dtype)])
    names = [s.name for s in session.spec.inputs]
    if set(names) != {"video", "audio", "modality"}:
        raise ArtifactError(f"the lip-reader graph takes {names}; expected video, audio, "
                            f"modality: re-export the artifact")
    modality = np.asarray(flags, np.float32).reshape(1, 2)
    outs = []
    for s in starts:
        out = session.run(video=np.ascontiguousarray(video[None, s: s + window], np.float32),
                          audio=np.ascontiguousarray(
                              audio[None, s * hop_samples: (s + window) * hop_samples],
                              np.float32),
                          modality=modality)
        lp = out[session.spec.outputs[0].name][0]
        if not np.isfinite(lp).all():
            # Seen with ExecuTorch .pte files of the lip reader when a window holds exact
            # silence (padding, video-only): a graph problem, not the user's input.
            raise ArtifactError(f"the {session.backend} graph at {session.path} gave NaN/inf "
                                f"log-probabilities for frames {s}-{s + window - 1}; "
                                f"try another backend (--backend onnxruntime) or re-export")
        outs.append(lp)
    k, V = outs[0].shape[0] // window, outs[0].shape[1]
    # Stitch whole video frames (their k output frames together), then unfold.
    return stitch([o.reshape(window, k * V) for o in outs], starts, n).reshape(n * k, V)


# ----------------------------------------------------------------------------- inputs

def _read_audio_arg(audio, sample_rate: int) -> np.ndarray:
    if isinstance(audio, (str, Path)):
        from avedge.runtime.audio_io import read_audio

        return read_audio(audio, sample_rate=sample_rate, what="audio").samples
    x = np.asarray(audio, np.float32)
    if x.ndim != 1 or len(x) == 0:
        raise InputError(f"audio must be a non-empty 1-D (mono) array at {sample_rate} Hz, "
                         f"got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("audio has NaN/inf samples; give a clean recording")
    return x


def fit_audio(audio: np.ndarray, frames: int, hop_samples: int) -> np.ndarray:
    """Trim, or pad with silence, to exactly frames * hop_samples samples."""
    n = frames * hop_samples
    if len(audio) >= n:
        return np.ascontiguousarray(audio[:n], np.float32)
    return np.concatenate([audio, np.zeros(n - len(audio), np.float32)]).astype(np.float32)


def frame_ranges(frames: list[int], most: int = 6) -> str:
    """[3, 4, 5, 9] -> 'frames 3-5, 9' (0-based), at most `most` runs then a count."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    parts = [f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:most]]
    more = f" and {len(runs) - most} more runs" if len(runs) > most else ""
    return "frames " + ", ".join(parts) + more


def search_grammar(grammar, lexicon, extra: dict):
    """The grammar the beam search keeps to: the user's (a Grammar or its JSON), else the
    artifact's when no word list was asked for, else None."""
    from avedge.runtime.decoding.grammar import Grammar

    if isinstance(grammar, Grammar):
        return grammar
    if grammar is not None:
        return Grammar.from_json(grammar)
    if lexicon is None and extra.get("grammar"):
        try:
            return Grammar.from_json(extra["grammar"])
        except InputError as exc:
            raise ArtifactError(f"the artifact's grammar is malformed ({exc}); re-export "
                                f"it") from None
    return None


def search(log_probs, extra: dict, out_fps: float, *, lexicon=None, grammar=None,
           beam: bool = True):
    """The task's search over a clip's (T, V) log-probs -> (Decoded, constraint, notes):
    the constraint rules of `lipread` (the artifact's grammar by default). `extra` needs
    "vocab" and "separator", and "grammar" / "lexicon" for the artifact's defaults."""
    from avedge.runtime.decoding import ctc

    vocab, sep, notes = list(extra["vocab"]), extra["separator"], []
    if not beam:
        if lexicon or grammar is not None:
            notes.append("greedy decoding ignores the lexicon and the grammar")
        return ctc.greedy(log_probs, vocab, separator=sep, fps=out_fps), "none", notes
    gram = search_grammar(grammar, lexicon, extra)
    if gram is not None:
        decoded = ctc.constrained(log_probs, vocab, gram, separator=sep, fps=out_fps)
        if decoded.alignment is not None:
            return decoded, "grammar", notes
        notes.append("the clip is too short for any sentence of the grammar: read with its "
                     "words in any order instead")
        words = gram.words()
    else:
        words = extra.get("lexicon") if lexicon is None else lexicon
    if not words:  # [] asked for: free character search
        return ctc.beam(log_probs, vocab, separator=sep, fps=out_fps), "none", notes
    decoded = ctc.beam(log_probs, vocab, lexicon=list(words), separator=sep, fps=out_fps)
    if decoded.alignment is None:
        notes.append("no sequence of lexicon words fits this clip; try without a lexicon")
    return decoded, "lexicon", notes


# ----------------------------------------------------------------------------- the task

def lipread(artifact_or_pipeline, video_path=None, *, audio=None, use_audio: bool = True,
            use_video: bool = True, rate: int = 1, lexicon: list[str] | None = None,
            grammar=None, beam: bool = True, backend: str | None = None) -> dict:
    """Read the words of a clip. The beam's constraint (`constraint` in the result): by
    default the artifact's grammar (a sentence of its forms), or its word list when it
    ships no grammar; `grammar` (a Grammar or its JSON dict) = a user's grammar; `lexicon`
    a list = only those words, in any order; [] = none (free character search);
    `beam=False`: greedy CTC (no constraint). Returns the result dict described in the
    module docstring and `avedge lipread --help`."""
    if grammar is not None and lexicon is not None:
        raise InputError("give a grammar or a lexicon, not both (a grammar's words are its "
                         "lexicon)")
    if not use_video and not use_audio:
        raise InputError("nothing to read: the video is off (--video-off) and the audio "
                         "is off (--no-audio); keep at least one")
    if video_path is None and (audio is None or not use_audio):
        raise InputError("nothing to read: give a video file, an audio file, or both")
    session, extra = open_rate(artifact_or_pipeline, rate, backend)
    if beam:  # a user's grammar the vocabulary cannot spell is refused before any decoding
        grammar = search_grammar(grammar, lexicon, extra)
        if grammar is not None:
            grammar.check_spelling(list(extra["vocab"]), extra["separator"])
    fps, sr, hop_samples = float(extra["fps"]), int(extra["sample_rate"]), \
        int(extra["hop_samples"])
    window = int(session.spec.input("video").shape[1])
    roi = int(session.spec.input("video").shape[2])
    max_rate = max(int(r) for r in extra["rates"])
    notes: list[str] = []
    ms = {"decode": 0.0, "face_roi": 0.0, "model": 0.0, "search": 0.0}

    # decode
    t0 = time.perf_counter()
    frames = track_audio = None
    if video_path is not None and (use_video or audio is None):
        from avedge.runtime.video_io import read_video

        v = read_video(video_path, fps=fps, audio_rate=sr)
        frames, track_audio = v.frames, v.audio
        if not use_video:
            frames = None  # read for its audio track only
    wav = None
    if use_audio:
        if audio is not None:
            wav = _read_audio_arg(audio, sr)
        elif track_audio is not None and len(track_audio):
            wav = np.asarray(track_audio, np.float32)
        elif frames is not None:
            notes.append(f"{Path(video_path).name} has no audio track and no audio file was "
                         f"given: read from the video only")
        else:
            raise InputError(f"the video is off and {str(video_path)!r} has no audio track; "
                             f"give an audio file (--audio FILE)")
    ms["decode"] = (time.perf_counter() - t0) * 1e3

    # face / ROI
    interpolated: list[int] = []
    finder = None
    if frames is not None:
        from avedge.runtime.vision.roi import crop_rois, normalize
        from avedge.runtime.vision.track import track_mouth

        t0 = time.perf_counter()
        track = track_mouth(frames)
        video = normalize(crop_rois(frames, track), float(extra["roi_mean"]),
                          float(extra["roi_std"]))
        ms["face_roi"] = (time.perf_counter() - t0) * 1e3
        interpolated = [int(i) for i in track.interpolated]
        finder = track.finder
        if interpolated:
            notes.append(f"no face in {len(interpolated)} of {len(frames)} frames "
                         f"({frame_ranges(interpolated)}); the mouth was interpolated there")
        n = len(frames)
    else:
        n = max(1, -(-len(wav) // hop_samples))
        video = np.zeros((n, roi, roi), np.float32)
    mismatch = None
    if wav is not None and frames is not None:
        mismatch = round(len(wav) / sr - n / fps, 3)
        if abs(mismatch) > 1 / fps:
            longer = "audio" if mismatch > 0 else "video"
            notes.append(f"audio and video lengths differ by {abs(mismatch):.3f} s (the "
                         f"{longer} is longer); the audio was "
                         f"{'trimmed' if mismatch > 0 else 'padded with silence'} to the video")
    audio_in = fit_audio(wav if wav is not None else np.zeros(0, np.float32), n, hop_samples)
    flags = np.array([frames is not None, wav is not None], np.float32)

    # model
    t0 = time.perf_counter()
    log_probs = run_windows(session, video, audio_in, flags, window,
                            window_hop(window, max_rate), hop_samples)
    ms["model"] = (time.perf_counter() - t0) * 1e3

    # search
    t0 = time.perf_counter()
    out_fps = fps * len(log_probs) / n  # the CTC frame rate (50 Hz for the shipped model)
    decoded, constraint, said = search(log_probs, extra, out_fps, lexicon=lexicon,
                                       grammar=grammar, beam=beam)
    notes += said
    ms["search"] = (time.perf_counter() - t0) * 1e3

    modality = {(1, 1): "audio-visual", (1, 0): "video", (0, 1): "audio"}[
        (int(flags[0]), int(flags[1]))]
    return {
        "text": decoded.text,
        "words": [{"word": w["word"], "start": w["start_s"], "end": w["end_s"]}
                  for w in decoded.words],
        "rate": int(rate),
        "modality": modality,
        "constraint": constraint,
        "rtf": round(sum(ms.values()) / 1e3 / (n / fps), 4),
        "ms": {k: round(v, 2) for k, v in ms.items()},
        "frames": int(n),
        "frames_interpolated": interpolated,
        "finder": finder,
        "backend": session.backend,
        "audio_video_mismatch_s": mismatch,
        "notes": notes,
    }
