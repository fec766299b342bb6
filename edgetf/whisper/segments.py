"""Whisper token ids -> text and timestamped chunks, as transformers' ``WhisperTokenizer._decode_asr``.

The ASR pipeline hands each chunk's generated ids (and, in chunked mode, its stride in seconds) to
:func:`decode_asr`, which walks a small state machine over them:

* language tokens set the current chunk's language; other special tokens are skipped;
* timestamp tokens open and close segments (``return_timestamps=True``); timestamps that go
  backwards mark a new 30-second window of long-form generation and shift later times;
* in chunked mode, timestamps inside a chunk's strides are not split on, and the text of
  overlapping chunks is merged by the longest common token run;
* with ``return_timestamps="word"`` each text token carries (start, end) from its chunk's token times
  (:mod:`.alignment`); segments become word chunks (``_collate_word_timestamps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .alignment import collate_word_timestamps
from .tokens import WhisperTokens


@dataclass
class ChunkOutput:
    """One chunk's generated ids (prompt removed) and its (length, left, right) stride in seconds;
    with word timestamps, each id's time in seconds (transformers' ``token_timestamps``)."""

    tokens: Sequence[int]
    stride: tuple[float, float, float] | None = None
    token_times: Sequence[float] | None = None


@dataclass
class _Segment:
    language: str | None
    start: float | None = None
    end: float | None = None
    text: str = ""
    done: bool = field(default=False, repr=False)
    words: list[dict[str, Any]] = field(default_factory=list)


def decode_asr(
    tokens: WhisperTokens,
    outputs: Sequence[ChunkOutput],
    *,
    return_timestamps: bool | str,
    return_language: bool,
    time_precision: float,
    segment_size: int = 1500,
) -> tuple[str, dict[str, Any]]:
    """(full text, {"chunks": [...]} or {}) for the chunk outputs of one input; ``return_timestamps="word"``
    gives word chunks (every output then needs ``token_times``)."""
    state = _State(tokens, return_timestamps, time_precision, segment_size, return_language)
    for output in outputs:
        state.consume(output)
    return state.finish(return_timestamps, return_language)


class _State:
    """The state machine of ``_decode_asr`` (segment or word timestamps)."""

    def __init__(
        self,
        tokens: WhisperTokens,
        return_timestamps: bool | str,
        time_precision: float,
        segment_size: int,
        return_language: bool = False,
    ):
        self.tokens = tokens
        self.return_timestamps = return_timestamps
        self.words = return_timestamps == "word"
        self.return_language = return_language
        self.previous_times: list[list[tuple[float, float]]] = []
        self.time_precision = time_precision
        self.segment_size = segment_size
        self.last_language: str | None = None
        self.chunks: list[_Segment] = []
        self.chunk = self.new_chunk()
        self.time_offset = 0.0
        self.previous_tokens: list[list[int]] = []
        self.skip = False

    def new_chunk(self) -> _Segment:
        return _Segment(self.last_language)

    def close(self, resolved: list[int]) -> None:
        self.chunk.text = self.tokens.decode(resolved)
        self.chunks.append(self.chunk)

    def close_timed(self) -> None:
        """Close the chunk from the pending token runs (and, for words, their token times)."""
        if not self.words:
            self.close(longest_common_sequence(self.previous_tokens))
            return
        resolved, times = merge_overlaps(self.previous_tokens, self.previous_times)
        self.close(resolved)
        eot = self.tokens.eot
        self.chunk.words = collate_word_timestamps(
            self.tokens.decode,
            resolved,
            times,
            self.last_language,
            self.return_language,
            eot if eot is not None else self.tokens.timestamp_begin,
        )

    def consume(self, output: ChunkOutput) -> None:
        tb = self.tokens.timestamp_begin
        precision = self.time_precision
        token_ids = self.tokens.strip_prompt([int(t) for t in output.tokens])
        if self.words and output.token_times is None:
            raise ValueError("decode_asr with return_timestamps='word' needs each output's token_times")
        token_times = list(output.token_times or ())
        last_timestamp: int | None = None
        first_timestamp: float = tb
        cur_max, prev_segments_len, penultimate = 0.0, 0.0, 0.0
        chunk_len = stride_right = 0.0
        if output.stride is not None:
            chunk_len, stride_left, stride_right = output.stride
            self.time_offset -= stride_left
            right_stride_start = chunk_len - stride_right
            if stride_left:
                first_timestamp = stride_left / precision + tb
            if stride_right:
                for token in reversed(token_ids):
                    if token >= tb:
                        if last_timestamp is not None and (token - tb) * precision < right_stride_start:
                            break
                        last_timestamp = token
        current: list[int] = []
        current_times: list[tuple[float, float]] = []
        for i, token in enumerate(token_ids):
            if token in self.tokens.special_ids:
                language = self.tokens.language_of(token)
                if language is not None:
                    if self.last_language and language != self.last_language and not self.return_timestamps:
                        self.previous_tokens.append(current)
                        self.close(longest_common_sequence(self.previous_tokens))
                        self.previous_tokens, current = [], []
                        self.chunk = self.new_chunk()
                    self.chunk.language = language
                    self.last_language = language
            elif token >= tb:
                timestamp = float((token - tb) * precision)
                if timestamp < cur_max:  # a new window of long-form generation started
                    single_ending = i >= 2 and not (token_ids[i - 1] >= tb and token_ids[i - 2] >= tb)
                    if single_ending:
                        prev_segments_len += precision * self.segment_size
                    else:
                        cur_max = penultimate
                        prev_segments_len += penultimate
                penultimate, cur_max = cur_max, timestamp
                time = round((token - tb) * precision + self.time_offset + prev_segments_len, 2)
                if last_timestamp and token >= last_timestamp:
                    self.skip = True  # inside the right stride: resolved by the next chunk
                elif self.skip or (self.previous_tokens and token < first_timestamp):
                    self.skip = False
                elif self.chunk.start is None:
                    self.chunk.start = time
                elif time != self.chunk.start:  # equal: a duplicated start token, not an end
                    self.chunk.end = time
                    self.previous_tokens.append(current)
                    if self.words:
                        self.previous_times.append(current_times)
                    self.close_timed()
                    self.previous_tokens, current = [], []
                    self.previous_times, current_times = [], []
                    self.chunk = self.new_chunk()
            else:
                current.append(token)
                if self.words:
                    start = (
                        round(0.0 + self.time_offset, 2) if i == 0 else round(token_times[i - 1] + self.time_offset, 2)
                    )
                    current_times.append((start, round(token_times[i] + self.time_offset, 2)))
        if output.stride is not None:
            self.time_offset += chunk_len - stride_right
        if current:
            self.previous_tokens.append(current)
            if self.words:
                self.previous_times.append(current_times)
        elif not any(p for p in self.previous_tokens):
            self.chunk = self.new_chunk()
            self.previous_tokens = []
            self.previous_times = []

    def finish(self, return_timestamps: bool, return_language: bool) -> tuple[str, dict[str, Any]]:
        if self.previous_tokens:
            self.close_timed()
        full_text = "".join(c.text for c in self.chunks)
        if not (return_timestamps or return_language):
            return full_text, {}
        if self.words:
            return full_text, {"chunks": [word for c in self.chunks for word in c.words]}
        chunks = []
        for c in self.chunks:
            item: dict[str, Any] = {}
            if return_language:
                item["language"] = c.language
            if return_timestamps:
                item["timestamp"] = (c.start, c.end)
            item["text"] = c.text
            chunks.append(item)
        return full_text, {"chunks": chunks}


def longest_common_sequence(sequences: Sequence[Sequence[int]]) -> list[int]:
    """Join overlapping token runs: each next run is slid over the joined tail and merged at the best
    overlap (matches / overlap length + length / 10000, at least two matches), splitting the overlap in
    the middle, as transformers' Whisper ``_find_longest_common_sequence``."""
    return merge_overlaps(sequences, None)[0]


def merge_overlaps(
    sequences: Sequence[Sequence[int]], times: Sequence[Sequence[tuple[float, float]]] | None
) -> tuple[list[int], list[tuple[float, float]]]:
    """:func:`longest_common_sequence`, and with per-token (start, end) ``times`` (word timestamps) a
    match also needs the left token's times not after the right one's; the times are split alike."""
    timed = bool(times)
    left = list(sequences[0])
    left_times = list(times[0]) if timed and times else []
    total: list[int] = []
    total_times: list[tuple[float, float]] = []
    for k, right_seq in enumerate(sequences[1:]):
        right = list(right_seq)
        right_times = list(times[k + 1]) if timed and times else []
        left_len, right_len = len(left), len(right)
        best = 0.0
        best_idx = (left_len, left_len, 0, 0)
        left_arr, right_arr = np.asarray(left), np.asarray(right)
        for i in range(1, left_len + right_len):
            eps = i / 10000.0
            l_start, l_stop = max(0, left_len - i), min(left_len, left_len + right_len - i)
            r_start, r_stop = max(0, i - left_len), min(right_len, i)
            if timed:
                matches = sum(
                    1
                    for idx in range(l_stop - l_start)
                    if left[l_start + idx] == right[r_start + idx]
                    and left_times[l_start + idx] <= right_times[r_start + idx]
                )
            else:
                matches = int(np.sum(left_arr[l_start:l_stop] == right_arr[r_start:r_stop]))
            score = matches / i + eps
            if matches > 1 and score > best:
                best = score
                best_idx = (l_start, l_stop, r_start, r_stop)
        l_start, l_stop, r_start, r_stop = best_idx
        total.extend(left[: (l_stop + l_start) // 2])
        left = right[(r_stop + r_start) // 2 :]
        if timed:
            total_times.extend(left_times[: (l_stop + l_start) // 2])
            left_times = right_times[(r_stop + r_start) // 2 :]
    total.extend(left)
    total_times.extend(left_times)
    return total, total_times
