"""avedge lipread VIDEO [--artifact DIR] [--audio WAV | --no-audio] [--video-off] [--rate 1|2|4]
[--grammar FILE | --lexicon FILE | --no-lexicon] [--greedy] [--backend B] [--json]

Read the words of a video: the mouth is tracked and cropped (88x88 grayscale at 25 fps),
the audio comes from the video's own track (or --audio FILE), and one set of weights reads
video, audio or both at the chosen token rate (4 is cheapest). Without --artifact, the
shipped lip-reader weights are exported once for the `cpu` target and cached
(~/.cache/avedge/artifacts).

Input handling: any container FFmpeg reads (mp4, mov, avi, mkv, webm), any or a variable
frame rate (resampled to 25 fps), RGBA or grayscale frames (read as RGB; grayscale frames
use the face box's geometric mouth), any length (clips over 4 s are read in overlapping
windows, shorter ones padded with their last frame). A face lost for some frames is
interpolated (`frames_interpolated`); audio and video of different lengths: the audio is
trimmed or padded with silence to the video and the difference reported
(`audio_video_mismatch_s`); a video without an audio track and no --audio is read from
video only (said in `notes`). Refused with a one-line error (exit code 2): no face in the
video (or lost in more than half the frames, naming them), a corrupt or truncated file,
a token rate the artifact lacks, nothing to read (--no-audio with --video-off), an
artifact that is not a lip reader, an empty lexicon file, a grammar file that is not one.

Constraint: by default the search only reads sentences of the grammar the artifact
ships (the corpus's two sentence forms: the GRID command and subject-verb-object
[place] [time]); when none fits the clip it reads the grammar's words in any order and
says so. --grammar FILE takes your grammar instead (JSON: {"forms": [[{"phrases":
["word", "two words", ...], "optional": false}, ...], ...]}: each form a sequence of
slots, each slot a list of phrases); --lexicon FILE keeps to a word list in any order
(words separated by whitespace or newlines; lower-cased, letters and apostrophes kept);
--no-lexicon searches characters freely; --greedy takes the best label per frame (no
constraint).

--json prints: text, words [{word, start, end} in seconds], rate, modality
("audio-visual" | "video" | "audio"), constraint ("grammar" | "lexicon" | "none"), rtf
(compute / clip duration), ms {decode, face_roi, model, search}, frames,
frames_interpolated, finder, backend,
audio_video_mismatch_s (audio minus video length, null without both), notes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avedge.cli.common import print_json, quiet_native_logs

FAMILY = "lipreader"


def register(sub):
    p = sub.add_parser("lipread", help="read the words of a video (lips, audio or both)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", nargs="?",
                   help="video file (mp4/mov/avi/mkv/webm); may be left out with --audio")
    p.add_argument("--artifact", help="lip-reader artifact directory "
                                      "(default: the shipped weights, exported for cpu)")
    audio = p.add_mutually_exclusive_group()
    audio.add_argument("--audio", help="audio file (wav/flac/ogg) instead of the video's track")
    audio.add_argument("--no-audio", action="store_true", help="read the lips only")
    p.add_argument("--video-off", action="store_true", help="read the audio only")
    p.add_argument("--rate", type=int, default=1,
                   help="token rate: 1, 2 or 4 (higher is cheaper; default 1)")
    lex = p.add_mutually_exclusive_group()
    lex.add_argument("--grammar", help="grammar file (JSON) replacing the artifact's")
    lex.add_argument("--lexicon", help="word list file: its words in any order")
    lex.add_argument("--no-lexicon", action="store_true", help="free character search")
    p.add_argument("--greedy", action="store_true", help="greedy CTC instead of beam search")
    p.add_argument("--backend", help="backend (default: the artifact's first available)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def read_lexicon(path) -> list[str]:
    """A word list file -> normalised words; empty or unusable: InputError naming the file."""
    from avedge.runtime.errors import InputError
    from avedge.runtime.pipelines.lipread import normalize_words

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read lexicon file {str(p)!r} ({exc.strerror or exc}); "
                         f"give a text file of words, one per line") from None
    words = normalize_words(text)
    if not words:
        raise InputError(f"lexicon file {str(p)!r} has no usable word (letters and "
                         f"apostrophes, separated by whitespace or newlines)")
    return words


def run(args) -> int:
    quiet_native_logs()
    from avedge.runtime.errors import InputError
    from avedge.runtime.pipelines.lipread import lipread

    if args.video is None and args.audio is None:
        raise InputError("give a VIDEO file, or --audio FILE to read audio only")
    if args.greedy and (args.lexicon or args.grammar):
        raise InputError("--greedy takes no lexicon or grammar; drop --greedy or the "
                         "constraint")
    if args.no_audio and args.video_off:
        raise InputError("nothing to read: --no-audio with --video-off turns off both the "
                         "audio and the video; keep at least one")
    lexicon = [] if args.no_lexicon else read_lexicon(args.lexicon) if args.lexicon else None
    grammar = None
    if args.grammar:
        from avedge.runtime.decoding.grammar import Grammar

        grammar = Grammar.from_file(args.grammar)
    if args.artifact:
        artifact = args.artifact
    else:
        from avedge.cli.common import default_artifact

        artifact = default_artifact(FAMILY, "cpu")
    res = lipread(artifact, args.video, audio=args.audio, use_audio=not args.no_audio,
                  use_video=not args.video_off, rate=args.rate, lexicon=lexicon,
                  grammar=grammar, beam=not args.greedy, backend=args.backend)
    if args.json:
        print_json(res)
        return 0
    print(res["text"] or "(no words read)")
    ms = res["ms"]
    print(f"rate {res['rate']}, {res['modality']}, {res['frames']} frames, RTF {res['rtf']:.3f} "
          f"(decode {ms['decode']:.0f} ms, face/ROI {ms['face_roi']:.0f} ms, model "
          f"{ms['model']:.0f} ms, search {ms['search']:.0f} ms; {res['backend']})")
    for note in res["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0
