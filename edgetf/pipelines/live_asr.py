"""Live transcription over a stream of audio blocks: confirmed text with a bounded delay.

The policy is whisper_streaming's (ufal, ``OnlineASRProcessor`` + ``HypothesisBuffer``, "LocalAgreement-2"):

1. blocks are appended to a buffer; once ``min_chunk_s`` of new audio has come, the whole buffer is
   transcribed again (the pipeline's own call, with timestamps) and cut into timed words;
2. words that start before the last confirmed word ended are dropped, and so is a run of 1 to 5 words
   that repeats the end of the confirmed text (the buffer still holds that audio);
3. the longest common prefix of this hypothesis and the previous one (compared by word text) is
   confirmed: two consecutive transcriptions agreed on it;
4. when the buffer is longer than ``trim_s``, it is cut at the end of a confirmed segment (Whisper: the
   second-last segment end not after the last confirmed word; CTC: a confirmed word's end), so each
   transcription stays short. When it still grows past ``max_buffer_s`` (nothing confirmed), every word
   of the hypothesis but the last is confirmed and the buffer is cut there: the delay is bounded;
5. at the end, the rest of the audio is transcribed and the whole hypothesis is confirmed.

Whisper's segments carry timestamps but its words do not (yet): word times inside a segment are
spread over the segment by character count. CTC words have their own times.

``LiveTranscriber(pipe).run(blocks)`` yields a :class:`LiveEvent` per transcription. Each event has
the newly confirmed words, the tentative rest, and the confirmed text so far; confirmed words are never
taken back and their times never go backwards. The final confirmed text relates to the offline transcript
of the same audio as follows: with one block (no re-transcription, no trimming) the words are the offline
transcript's words; in general they are the confirmed prefixes of transcriptions of growing buffers, which
for a model whose transcript of a prefix of the audio is a prefix of its transcript of the whole (a
"prefix-stable" model, what a trained model is for speech with pauses) are again the offline words.

A microphone is a thin layer over this (:func:`microphone_blocks`, with the optional ``sounddevice``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio.io import load_audio
from ..errors import InvalidInputError

MIN_CHUNK_S = 1.0  # whisper_streaming's default --min-chunk-size
TRIM_S = 15.0  # whisper_streaming's default --buffer_trimming_sec
MAX_BUFFER_S = 30.0  # Whisper's window: past it, confirm what there is
NGRAM_MAX = 5  # longest repeated run of words dropped at the confirmed boundary


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str

    def chunk(self) -> dict[str, Any]:
        """The word in the pipeline's chunk format."""
        return {"timestamp": (round(self.start, 3), round(self.end, 3)), "text": self.text}


@dataclass(frozen=True)
class LiveEvent:
    """One update: the words confirmed now, the tentative rest, all confirmed text, audio received
    (seconds), the wall time the transcription took (seconds), and whether this is the final event."""

    confirmed: list[dict[str, Any]]
    tentative: list[dict[str, Any]]
    text: str
    received: float
    compute_s: float
    final: bool = False

    @property
    def confirmed_text(self) -> str:
        return " ".join(w["text"] for w in self.confirmed)

    @property
    def tentative_text(self) -> str:
        return " ".join(w["text"] for w in self.tentative)


def segment_words(chunks: list[Mapping[str, Any]], buffer_end: float) -> tuple[list[Word], list[float]]:
    """Whisper segments -> words (times spread by character count, none past the buffer's end) and the
    segment ends."""
    words, ends = [], []
    for chunk in chunks:
        start, end = chunk["timestamp"]
        start = 0.0 if start is None else min(float(start), buffer_end)  # no word after the audio heard
        end = buffer_end if end is None else min(max(float(end), start), buffer_end)
        ends.append(end)
        pieces = str(chunk["text"]).split()
        total = sum(len(p) for p in pieces) or 1
        at = 0
        for piece in pieces:
            w_start = start + (end - start) * at / total
            at += len(piece)
            words.append(Word(w_start, start + (end - start) * at / total, piece))
    return words, ends


def ctc_words(chunks: list[Mapping[str, Any]]) -> tuple[list[Word], list[float]]:
    words = [Word(float(c["timestamp"][0]), float(c["timestamp"][1]), str(c["text"])) for c in chunks]
    return words, [w.end for w in words]


@dataclass
class LiveTranscriber:
    """LocalAgreement-2 over a growing buffer (see the module docstring); ``options`` go to each call."""

    pipe: Any
    sampling_rate: int | None = None
    min_chunk_s: float = MIN_CHUNK_S
    trim_s: float = TRIM_S
    max_buffer_s: float = MAX_BUFFER_S
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("min_chunk_s", "trim_s", "max_buffer_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInputError(f"live {name} must be a positive number of seconds, got {value!r}")
        if self.trim_s > self.max_buffer_s:
            raise InvalidInputError(f"live trim_s={self.trim_s} must not exceed max_buffer_s={self.max_buffer_s}")
        bad = sorted(set(self.options) & {"return_timestamps", "progress", "cancel"})
        if bad:
            raise InvalidInputError(f"live mode sets {bad} itself; leave them out")
        self.rate = int(self.pipe.sampling_rate)
        self.in_rate = self.rate if self.sampling_rate is None else int(self.sampling_rate)
        self.buffer = np.zeros(0, np.float32)
        self.offset = 0.0  # seconds of audio cut from the front of the buffer
        self.pending = 0  # samples received since the last transcription
        self.committed: list[Word] = []
        self.previous: list[Word] = []  # the last hypothesis after the confirmed words
        self.segment_ends: list[float] = []

    # -- input -------------------------------------------------------------------------------------------
    @property
    def received(self) -> float:
        return self.offset + self.buffer.shape[0] / self.rate

    def add(self, block: Any) -> None:
        """Append one block (1-D or (samples, channels) array at ``sampling_rate``)."""
        array = np.asarray(block)
        if array.ndim not in (1, 2):
            raise InvalidInputError(
                f"a live audio block must be a 1-D or 2-D array of samples, got shape {array.shape}"
            )
        if array.size == 0:
            return
        audio = load_audio({"array": array, "sampling_rate": self.in_rate}, self.rate)
        self.buffer = np.concatenate([self.buffer, audio.samples.astype(np.float32, copy=False)])
        self.pending += audio.samples.shape[0]

    # -- one transcription ------------------------------------------------------------------------------------
    def hypothesis(self) -> list[Word]:
        """The buffer transcribed, as words in stream time (and the segment ends kept for trimming)."""
        end = self.buffer.shape[0] / self.rate
        if getattr(self.pipe, "is_whisper", False):
            out = self.pipe(self.buffer, return_timestamps=True, **self.options)
            words, ends = segment_words(out.get("chunks") or [], end)
        else:
            out = self.pipe(self.buffer, return_timestamps="word", **self.options)
            words, ends = ctc_words(out.get("chunks") or [])
        self.segment_ends = [e + self.offset for e in ends]
        return [Word(w.start + self.offset, w.end + self.offset, w.text) for w in words]

    def new_words(self, words: list[Word]) -> list[Word]:
        """The hypothesis after the confirmed words: later words, minus a repeat of the confirmed tail."""
        last = self.committed[-1].end if self.committed else self.offset
        new = [w for w in words if w.start > last - 0.1]
        if new and self.committed and abs(new[0].start - last) < 1:
            for n in range(min(len(self.committed), len(new), NGRAM_MAX), 0, -1):
                if [w.text for w in self.committed[-n:]] == [w.text for w in new[:n]]:
                    return new[n:]
        return new

    def update(self, final: bool = False) -> LiveEvent:
        """Transcribe the buffer, confirm what two transcriptions agree on, trim; the event."""
        began = time.perf_counter()
        if final and not self.pending:  # nothing new since the last transcription: confirm its words
            new = self.previous
        else:
            new = self.new_words(self.hypothesis()) if self.buffer.shape[0] else []
        self.pending = 0
        agreed = 0
        while agreed < min(len(new), len(self.previous)) and new[agreed].text == self.previous[agreed].text:
            agreed += 1
        confirmed = new if final else new[:agreed]
        rest = [] if final else new[agreed:]
        if not final and not confirmed and self.buffer.shape[0] / self.rate > self.max_buffer_s and len(rest) > 1:
            confirmed, rest = rest[:-1], rest[-1:]  # nothing agreed for too long: bound the delay
        self.committed.extend(confirmed)
        self.previous = rest
        if not final:
            self.trim()
        return LiveEvent(
            [w.chunk() for w in confirmed],
            [w.chunk() for w in rest],
            self.text,
            round(self.received, 3),
            time.perf_counter() - began,
            final,
        )

    def trim(self) -> None:
        """Cut the buffer at a confirmed segment end once it is longer than ``trim_s`` (whisper_streaming's
        ``chunk_completed_segment``); past ``max_buffer_s``, at the last confirmed word, or, with nothing
        confirmed in it (silence, a word that never ends), before the tentative words (or the last
        ``min_chunk_s``)."""
        seconds = self.buffer.shape[0] / self.rate
        if seconds <= self.trim_s:
            return
        cut: float | None = None
        if self.committed:
            confirmed_end = self.committed[-1].end
            ends = [e for e in self.segment_ends if self.offset < e <= confirmed_end]
            if getattr(self.pipe, "is_whisper", False) and len(self.segment_ends) > 1:
                ends = [e for e in self.segment_ends[:-1] if self.offset < e <= confirmed_end]
            cut = ends[-1] if ends else (confirmed_end if seconds > self.max_buffer_s else None)
        if (cut is None or cut <= self.offset) and seconds > self.max_buffer_s:
            cut = self.previous[0].start if self.previous else self.received - self.min_chunk_s
        if cut is None or cut <= self.offset:
            return
        samples = int(round((cut - self.offset) * self.rate))
        self.buffer = self.buffer[samples:]
        self.offset += samples / self.rate
        self.previous = [w for w in self.previous if w.start >= cut - 0.1]

    @property
    def text(self) -> str:
        """All confirmed text so far, words joined by spaces."""
        return " ".join(w.text for w in self.committed)

    # -- the stream -----------------------------------------------------------------------------------------
    def run(self, blocks: Iterable[Any]) -> Iterator[LiveEvent]:
        """Feed ``blocks``; an event after each transcription (every ``min_chunk_s`` of audio), then a final one."""
        for block in blocks:
            self.add(block)
            if self.pending >= self.min_chunk_s * self.rate:
                yield self.update()
        yield self.update(final=True)


def file_blocks(audio: Any, sampling_rate: int, block_s: float) -> Iterator[np.ndarray]:
    """An audio input (path, bytes, array) cut into ``block_s`` blocks at ``sampling_rate``: a file fed as a stream."""
    samples = load_audio(audio, sampling_rate).samples
    step = max(1, int(round(block_s * sampling_rate)))
    for start in range(0, samples.shape[0], step):
        yield samples[start : start + step]


def microphone_blocks(sampling_rate: int = 16000, block_s: float = 0.5, device: Any = None) -> Iterator[np.ndarray]:
    """Mono float32 blocks from a microphone, with the optional ``sounddevice`` package (``pip install
    sounddevice``); stops when the caller stops iterating. ``for event in pipe.live(microphone_blocks()):``"""
    try:
        import sounddevice  # type: ignore[import-not-found]
    except ImportError as exc:
        raise InvalidInputError("microphone input needs the sounddevice package: pip install sounddevice") from exc
    frames = max(1, int(round(block_s * sampling_rate)))
    with sounddevice.InputStream(samplerate=sampling_rate, channels=1, dtype="float32", device=device) as stream:
        while True:
            block, _overflowed = stream.read(frames)
            yield block[:, 0].copy()
