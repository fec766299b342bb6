"""``pipe.stream(audio)``: an ASR output's ``"chunks"`` yielded as the audio is decoded.

Whisper decodes window by window (long-form, :meth:`edgetf.whisper.seek.WhisperModel.windows`) or chunk by
chunk (``chunk_length_s``); CTC models chunk by chunk. After each step the ids decoded so far are turned
into chunks exactly as the whole call does (:func:`edgetf.whisper.segments.decode_asr`, CTC offsets), and
the chunks that later ids can no longer change are yielded:

* Whisper: every segment closed by its end timestamp (``decode_asr`` never revisits a closed segment);
  an open last segment (end None) waits for the next step;
* CTC: every word (character) but the last, which the next chunk may continue.

What is left is yielded from the final decoding, so the streamed chunks, concatenated, are the
non-streamed call's ``"chunks"`` (and their texts joined, Whisper's ``"text"``). Streaming always
returns timestamps: ``return_timestamps`` defaults to True (Whisper) or ``"word"`` (CTC).
``progress`` and ``cancel`` work as in the plain call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..audio.io import Audio
from ..progress import Progress
from ..whisper.segments import decode_asr


def whisper_segments(pipe: Any, audio: Audio, opts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Segments of a Whisper pipeline's call, as each window or chunk is decoded."""
    opts = {**opts, "return_timestamps": True}
    return_language = bool(opts.get("return_language") or False)
    progress = Progress.from_options(opts)
    progress.check()
    sent = 0
    outputs: list[Any] = []

    def chunks_of(outputs: list[Any]) -> list[dict[str, Any]]:
        _, optional = decode_asr(
            pipe.tokens,
            outputs,
            return_timestamps=True,
            return_language=return_language,
            time_precision=pipe.time_precision,
        )
        return optional.get("chunks", [])

    for step in pipe.generate_steps(audio, opts):
        outputs = step.outputs
        if step.done < 1.0:
            chunks = chunks_of(outputs)
            ready = len(chunks) - (1 if chunks and chunks[-1]["timestamp"][1] is None else 0)
            yield from chunks[sent:ready]
            sent = max(sent, ready)
        progress.update(step.done)
    yield from chunks_of(outputs)[sent:]


def ctc_pieces(pipe: Any, audio: Audio, opts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Words (or characters) of a CTC pipeline's call, as each chunk is decoded."""
    timestamps = pipe.ctc_timestamps(opts) or "word"
    progress = Progress.from_options(opts)
    progress.check()
    sent = 0
    ids = None
    for ids, done, _ in pipe.id_steps(audio, opts):
        if done < 1.0:
            chunks = pipe.ctc_result(ids, timestamps)["chunks"]
            ready = max(sent, len(chunks) - 1)
            yield from chunks[sent:ready]
            sent = ready
        progress.update(done)
    if ids is not None:
        yield from pipe.ctc_result(ids, timestamps)["chunks"][sent:]
