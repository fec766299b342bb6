"""Pure functions from pipeline outputs to the OpenAI routes' response bodies (no I/O, no sessions)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..transcripts import clock, cue_text

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


# -- transcripts -----------------------------------------------------------------------------------------
def segments(output: dict[str, Any], duration: float) -> list[dict[str, Any]]:
    """``[{"id", "start", "end", "text"}]`` from an ASR output's chunks (an open end becomes ``duration``)."""
    rows = []
    for index, chunk in enumerate(output.get("chunks") or []):
        start, end = chunk["timestamp"]
        start = 0.0 if start is None else float(start)
        end = duration if end is None else float(end)
        rows.append({"id": index, "start": round(start, 3), "end": round(max(end, start), 3), "text": chunk["text"]})
    return rows


def srt(rows: Sequence[dict[str, Any]]) -> str:
    blocks = [
        f"{i}\n{clock(row['start'], ',')} --> {clock(row['end'], ',')}\n{cue_text(row['text'])}\n"
        for i, row in enumerate(rows, start=1)
    ]
    return "\n".join(blocks)


def vtt(rows: Sequence[dict[str, Any]]) -> str:
    blocks = [f"{clock(row['start'], '.')} --> {clock(row['end'], '.')}\n{cue_text(row['text'])}\n" for row in rows]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose_json(
    output: dict[str, Any], *, task: str, language: str | None, duration: float, words: bool
) -> dict[str, Any]:
    """OpenAI's verbose_json: text, duration, language and timed segments (or words, when asked for word
    granularity: Whisper's ``return_timestamps="word"``, a CTC model's word offsets). Fields edgetf does not
    compute (avg_logprob ...) are left out."""
    rows = segments(output, duration)
    body: dict[str, Any] = {"task": task, "language": language, "duration": round(duration, 3), "text": output["text"]}
    if words:
        body["words"] = [{"word": r["text"], "start": r["start"], "end": r["end"]} for r in rows]
    else:
        body["segments"] = rows
    return body


def transcript_body(
    output: dict[str, Any], response_format: str, *, task: str, language: str | None, duration: float, words: bool
) -> tuple[Any, str]:
    """(body, media type) of a transcription in ``response_format``."""
    if response_format == "json":
        return {"text": output["text"]}, "application/json"
    if response_format == "text":
        return output["text"], "text/plain; charset=utf-8"
    if response_format == "srt":
        return srt(segments(output, duration)), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return vtt(segments(output, duration)), "text/vtt; charset=utf-8"
    return verbose_json(output, task=task, language=language, duration=duration, words=words), "application/json"


# -- embeddings ------------------------------------------------------------------------------------------
def embedding_value(vector: Any, encoding_format: str) -> Any:
    """A float list, or (``base64``) the little-endian float32 bytes in base64, as OpenAI sends them."""
    array = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(array.tobytes()).decode("ascii")
    return array.tolist()


def embeddings_body(vectors: Sequence[Any], model: str, encoding_format: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding_value(v, encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# -- completions -----------------------------------------------------------------------------------------
def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(text up to the first stop string, whether one was found)."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopScanner:
    """Streams text pieces while holding back what could be the start of a stop string.

    ``push(piece)`` returns the text that is safe to send; ``stopped`` turns True once a stop string
    appeared (the text before it has then been returned, and nothing after).
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        text, found = cut_at_stop(self.pending, self.stops)
        if found:
            self.stopped = True
            self.pending = ""
            return text
        safe = len(self.pending) - self.hold if self.hold else len(self.pending)
        out, self.pending = self.pending[: max(safe, 0)], self.pending[max(safe, 0) :]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def completion_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def completion_body(
    ident: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body
