"""Transcripts out: an ASR result as SRT, WebVTT, plain text, TSV or JSON (pure functions, no sessions).

The input is what ``pipe(audio, return_timestamps=...)`` returns for automatic-speech-recognition:
``{"text": ..., "chunks": [{"timestamp": (start, end), "text": ...}, ...]}``, where a chunk is a Whisper
segment (``return_timestamps=True``), a CTC word (``"word"``) or a CTC character (``"char"``).

The formats follow openai-whisper's writers (``whisper/utils.py``):

* SRT: numbered cues from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, the text, a blank line;
* WebVTT: ``WEBVTT``, a blank line, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` (hours always written, as
  faster-whisper's and OpenAI's API do), the text, a blank line;
* TSV: ``start<TAB>end<TAB>text`` with integer milliseconds, a header line;
* txt: one cue per line (the whole text when the result has no chunks);
* JSON: the result itself.

Cue text: whitespace collapsed, ``-->`` written ``->`` (it would end a cue's timing line). Whisper segments
are one cue each; words (and characters, joined into words first) are grouped into cues of at most
``max_line_count`` lines of ``max_line_width`` characters, and a pause of more than 3 s starts a new cue.

Timestamps are made safe for players, never reordered: a missing start is the previous cue's end, a
missing end (Whisper's last unfinished segment) is the next cue's start or else ``duration``; every cue
starts no earlier than the previous one ends, and ends no earlier than it starts and no later than the
next one starts (so cues never go backwards and never overlap); with ``duration``, nothing ends after it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

FORMATS = ("srt", "vtt", "txt", "tsv", "json")
GRANULARITIES = ("segment", "word", "char")
MAX_LINE_WIDTH = 42  # characters per subtitle line when words are grouped (a common broadcast limit)
MAX_LINE_COUNT = 2
LONG_PAUSE_S = 3.0  # openai-whisper starts a new subtitle after a pause this long


@dataclass(frozen=True)
class Cue:
    """One subtitle: start and end in seconds, text (lines separated by ``\\n``)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Piece:
    start: float | None
    end: float | None
    text: str


def clock(seconds: float, decimal_marker: str = ",") -> str:
    """``HH:MM:SS,mmm`` (``decimal_marker="."`` for WebVTT); negative times are written as 0."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def granularity_of(chunks: Sequence[Mapping[str, Any]]) -> str:
    """What the chunks are when the caller does not say: ``char`` when every text is at most one
    character, ``word`` when no text holds whitespace, else ``segment`` (Whisper's texts start with a space)."""
    texts = [str(c.get("text", "")) for c in chunks]
    if texts and all(len(t) <= 1 for t in texts):
        return "char"
    if texts and not any(any(ch.isspace() for ch in t) for t in texts):
        return "word"
    return "segment"


def cue_text(text: str) -> str:
    return " ".join(text.split()).replace("-->", "->")


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InvalidInputError(f"{where}: a timestamp must be a finite number of seconds or None, got {value!r}")
    return float(value)


def pieces_of(result: Mapping[str, Any]) -> list[Piece]:
    """The result's chunks as checked (start, end, text) pieces."""
    if not isinstance(result, Mapping) or "text" not in result:
        raise InvalidInputError("a transcript is an ASR result: a dict with 'text' (and 'chunks' for timings)")
    chunks = result.get("chunks")
    if chunks is None:
        raise InvalidInputError(
            "srt, vtt and tsv need timings: the result has no 'chunks'; call the pipeline with "
            "return_timestamps=True (Whisper) or 'word' (CTC)"
        )
    out = []
    for i, chunk in enumerate(chunks):
        stamp = chunk.get("timestamp") if isinstance(chunk, Mapping) else None
        if not isinstance(stamp, (tuple, list)) or len(stamp) != 2:
            raise InvalidInputError(f"chunks[{i}] needs a (start, end) 'timestamp', got {chunk!r}")
        where = f"chunks[{i}]"
        out.append(Piece(_time(stamp[0], where), _time(stamp[1], where), str(chunk.get("text", ""))))
    return out


def words_of_chars(pieces: Sequence[Piece]) -> list[Piece]:
    """Characters joined into words at whitespace (start of the first, end of the last character)."""
    words: list[Piece] = []
    current: list[Piece] = []
    for piece in [*pieces, Piece(None, None, " ")]:
        if piece.text.strip():
            current.append(piece)
        elif current:
            words.append(Piece(current[0].start, current[-1].end, "".join(p.text for p in current)))
            current = []
    return words


def group_words(words: Sequence[Piece], max_line_width: int, max_line_count: int) -> list[Piece]:
    """Words into cues of at most ``max_line_count`` lines of ``max_line_width`` characters; a pause
    longer than 3 s ends a cue (as openai-whisper's subtitle iterator with both limits set)."""
    cues: list[Piece] = []
    lines: list[list[Piece]] = []
    last_end: float | None = None

    def flush() -> None:
        if lines:
            flat = [w for line in lines for w in line]
            text = "\n".join(" ".join(w.text.strip() for w in line) for line in lines)
            cues.append(Piece(flat[0].start, flat[-1].end, text))
            lines.clear()

    for word in words:
        text = word.text.strip()
        if not text:
            continue
        pause = word.start is not None and last_end is not None and word.start - last_end > LONG_PAUSE_S
        if pause:
            flush()
        if lines and len(" ".join(w.text.strip() for w in lines[-1])) + 1 + len(text) <= max_line_width:
            lines[-1].append(word)
        else:
            if len(lines) >= max_line_count:
                flush()
            lines.append([word])
        last_end = word.end if word.end is not None else word.start
    flush()
    return cues


def safe_times(pieces: Sequence[Piece], duration: float | None) -> list[Cue]:
    """Cues whose times never go backwards and never overlap (see the module docstring)."""
    starts = [p.start for p in pieces]
    cues: list[Cue] = []
    previous_end = 0.0
    for i, piece in enumerate(pieces):
        start = max(previous_end, piece.start if piece.start is not None else previous_end)
        later = next((s for s in starts[i + 1 :] if s is not None), None)
        end = piece.end
        if end is None:
            end = later if later is not None and later >= start else duration
        if end is None:
            end = start
        end = max(end, start)
        if later is not None and later < end:  # the next cue starts first: this one ends there (or at once)
            end = max(later, start)
        if duration is not None:  # nothing past the audio's end (random or confused models time beyond it)
            start, end = min(start, max(duration, previous_end)), min(end, max(duration, previous_end))
        cues.append(Cue(start, end, piece.text))
        previous_end = end
    return cues


def cues(
    result: Mapping[str, Any],
    *,
    duration: float | None = None,
    granularity: str | None = None,
    max_line_width: int = MAX_LINE_WIDTH,
    max_line_count: int = MAX_LINE_COUNT,
) -> list[Cue]:
    """The subtitles of an ASR result: one per Whisper segment, or words grouped into cues.

    ``duration`` (seconds of audio) ends a last segment whose end is None; ``granularity`` is
    ``"segment"``, ``"word"`` or ``"char"`` (default: told from the chunks, :func:`granularity_of`)."""
    pieces = pieces_of(result)
    kind = granularity or granularity_of(result["chunks"])
    if kind not in GRANULARITIES:
        raise InvalidInputError(f"granularity={kind!r}: use one of {', '.join(GRANULARITIES)}")
    for name, value in (("max_line_width", max_line_width), ("max_line_count", max_line_count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if duration is not None:
        duration = _time(duration, "duration")
    if kind == "char":
        pieces = words_of_chars(pieces)
    if kind == "segment":
        pieces = [Piece(p.start, p.end, cue_text(p.text)) for p in pieces]
    else:
        pieces = group_words(pieces, max_line_width, max_line_count)
        pieces = [Piece(p.start, p.end, "\n".join(cue_text(line) for line in p.text.split("\n"))) for p in pieces]
    return [c for c in safe_times(pieces, duration) if c.text]


def to_srt(result: Mapping[str, Any], **options: Any) -> str:
    """SubRip text of an ASR result (options as :func:`cues`)."""
    return "".join(
        f"{i}\n{clock(c.start, ',')} --> {clock(c.end, ',')}\n{c.text}\n\n"
        for i, c in enumerate(cues(result, **options), start=1)
    )


def to_vtt(result: Mapping[str, Any], **options: Any) -> str:
    """WebVTT text of an ASR result (options as :func:`cues`)."""
    body = "".join(f"{clock(c.start, '.')} --> {clock(c.end, '.')}\n{c.text}\n\n" for c in cues(result, **options))
    return "WEBVTT\n\n" + body


def to_tsv(result: Mapping[str, Any], **options: Any) -> str:
    """``start<TAB>end<TAB>text`` lines in integer milliseconds, after a header (openai-whisper's TSV)."""
    rows = [
        f"{round(c.start * 1000)}\t{round(c.end * 1000)}\t{c.text.replace(chr(10), ' ')}"
        for c in cues(result, **options)
    ]
    return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)


def to_txt(result: Mapping[str, Any], **options: Any) -> str:
    """One cue per line, or the whole text when the result has no chunks."""
    if not isinstance(result, Mapping) or not isinstance(result.get("text"), str):
        raise InvalidInputError("a transcript is an ASR result: a dict with 'text' (and 'chunks' for timings)")
    if result.get("chunks") is None:
        return result["text"].strip() + "\n"
    return "".join(c.text.replace("\n", " ") + "\n" for c in cues(result, **options))


def to_json(result: Mapping[str, Any], **_options: Any) -> str:
    """The result as JSON (timestamps as [start, end] lists, NumPy numbers as numbers)."""
    if not isinstance(result, Mapping) or "text" not in result:
        raise InvalidInputError("a transcript is an ASR result: a dict with 'text' (and 'chunks' for timings)")

    def plain(value: Any) -> Any:
        if hasattr(value, "item") and callable(value.item):
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(dict(result), ensure_ascii=False, indent=2, default=plain) + "\n"


WRITERS = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "tsv": to_tsv, "json": to_json}


def render(result: Mapping[str, Any], format: str, **options: Any) -> str:  # noqa: A002 - the CLI's word
    """The result as text in ``format`` (one of :data:`FORMATS`)."""
    writer = WRITERS.get(format)
    if writer is None:
        raise InvalidInputError(f"transcript format {format!r}: use one of {', '.join(FORMATS)}")
    return writer(result, **options)


def write(result: Mapping[str, Any], path: str | Path, format: str | None = None, **options: Any) -> Path:  # noqa: A002
    """Write the result to ``path`` in ``format`` (default: the file's extension), UTF-8; the path written."""
    target = Path(path)
    fmt = format or target.suffix.lstrip(".").lower()
    text = render(result, fmt, **options)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot write the transcript to {str(target)!r}: {exc}") from exc
    return target
