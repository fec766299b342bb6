"""Word timestamps for Whisper, as transformers' ``return_timestamps="word"``: token times from the
decoder's cross-attention and dynamic time warping, then tokens grouped into words.

transformers 4.57 (``WhisperForConditionalGeneration._extract_token_timestamps``) takes, per 30-second
window, the cross-attention weights of the ``alignment_heads`` (generation_config.json) at every decoded
position after the prompt, crops them to the audio's frames (``num_frames // 2`` encoder positions),
normalizes each head over the tokens (zero mean, unit variance), median-filters them along time
(``median_filter_width`` from config.json), averages the heads and aligns tokens to time with DTW on the
negated matrix; a token's time is the time index where the DTW path first reaches it, times 0.02 s.

transformers collects the weights step by step while it decodes (reordered along the chosen beam under
beam search). edgetf gets the same rows from one teacher-forced pass of the merged decoder over the
window's decoder input and generated ids (its last id is never a query, as in transformers), reading the
graph's ``cross_attentions.{layer}`` outputs (exported as transformers.js does). The rows are the same
attention up to float rounding; the decode itself is untouched, so without word timestamps nothing runs.

Everything here is numpy on arrays; :func:`window_token_times` is the one function that runs a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BundleError, InvalidInputError

ATTENTION_PREFIX = "cross_attentions."  # the merged decoder's outputs, one per decoder layer
TIME_PRECISION = 0.02  # seconds per encoder position (transformers' default in _extract_token_timestamps)
PREPEND_PUNCTUATION = "\"'“¡¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
NO_SPACE_LANGUAGES = frozenset({"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"})
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


@dataclass(frozen=True)
class AlignmentSettings:
    """Which cross-attention heads align text to audio and how their weights are smoothed."""

    heads: tuple[tuple[int, int], ...]  # (decoder layer, head)
    median_filter_width: int = 7

    @classmethod
    def from_configs(cls, generation: dict[str, Any], config: dict[str, Any]) -> AlignmentSettings:
        heads = generation.get("alignment_heads")
        if not heads:
            raise InvalidInputError(
                "return_timestamps='word' needs alignment_heads in the bundle's generation_config.json "
                "(the [layer, head] pairs whose cross-attention follows the audio)"
            )
        width = int(config.get("median_filter_width", 7))
        if width <= 0 or width % 2 != 1:
            raise BundleError(f"config.json median_filter_width must be a positive odd number, got {width}")
        return cls(tuple((int(layer), int(head)) for layer, head in heads), width)

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.heads})


def check_attention_outputs(output_names: Sequence[str], settings: AlignmentSettings, file: str) -> None:
    """A clear error when the decoder graph lacks the cross-attention outputs word timestamps read."""
    missing = [
        f"{ATTENTION_PREFIX}{layer}" for layer in settings.layers if f"{ATTENTION_PREFIX}{layer}" not in output_names
    ]
    if missing:
        raise BundleError(
            f"return_timestamps='word' needs the decoder's cross-attention outputs ({', '.join(missing)}), which "
            f"{file} does not have (a bundle exported before word timestamps): re-export it with this edgetf "
            "(python -m export SOURCE --task automatic-speech-recognition; its edgetf.json then lists "
            "extra.word_timestamps), or use a transformers.js folder exported with output_attentions"
        )


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd ``width`` along the last axis, edges reflected
    (transformers' ``_median_filter``; inputs no longer than half the width are returned as they are)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.sort(windows, axis=-1)[..., pad]


def dynamic_time_warping(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text indices, time indices) of the cheapest monotonic path through a (tokens, frames) cost
    matrix, ties broken as transformers' ``_dynamic_time_warping`` (diagonal, then up, else left) with
    its float32 cost table; computed one anti-diagonal at a time."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n, m = matrix.shape
    cost = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for k in range(2, n + m + 1):  # cells (i, j), i + j = k, depend only on diagonals k-1 and k-2
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        diagonal = (c0 < c1) & (c0 < c2)
        up = ~diagonal & (c1 < c0) & (c1 < c2)
        best = np.where(diagonal, c0, np.where(up, c1, c2))
        cost[i, j] = (matrix[i - 1, j - 1] + best.astype(np.float64)).astype(np.float32)
        trace[i, j] = np.where(diagonal, 0, np.where(up, 1, 2))
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.asarray(text[::-1]), np.asarray(time[::-1])


def token_times(weights: np.ndarray, num_frames: int | None, median_width: int) -> np.ndarray:
    """Seconds (in the window) of each generated token from the alignment heads' cross-attention.

    weights: (heads, rows, encoder positions), row r the attention of the query that is generated token
    r (the prompt's rows already dropped); the result has rows + 1 entries (the last token, never a
    query, repeats the previous time), as transformers returns them after the prompt's zeros."""
    if weights.shape[1] == 0:
        return np.zeros(1, dtype=np.float64)
    if num_frames is not None:
        # transformers crops twice (once for the batch, once per row): the same unless the window starts
        # after the audio's end (short audio's padding), where num_frames is negative and each crop cuts
        weights = weights[..., : num_frames // 2][..., : num_frames // 2]
    weights = weights.astype(np.float32, copy=False)
    std = weights.std(axis=-2, keepdims=True)
    mean = weights.mean(axis=-2, keepdims=True)
    weights = median_filter((weights - mean) / std, median_width)
    matrix = weights.mean(axis=0)
    text, time = dynamic_time_warping(-matrix.astype(np.float64))
    jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
    jump_times = time[jumps] * TIME_PRECISION
    return np.concatenate([jump_times, jump_times[-1:]])


def window_token_times(
    decoder: Any,
    sequence: np.ndarray,
    input_length: int,
    settings: AlignmentSettings,
    num_frames: int | None,
) -> np.ndarray:
    """Token times (seconds in the window) of one window's generated ids.

    decoder: a :class:`edgetf.generation.Seq2SeqDecoder` bound to the window's encoder output;
    sequence: the decoder input (``input_length`` ids) followed by every generated id (EOS included).
    Returns one time per generated id."""
    generated = len(sequence) - input_length
    if generated <= 0:
        return np.zeros(0, dtype=np.float64)
    queries = np.asarray(sequence[:-1], dtype=np.int64)[None]
    names = [f"{ATTENTION_PREFIX}{layer}" for layer in settings.layers]
    outputs = decoder.teacher_forced(queries, names)
    weights = np.stack([outputs[f"{ATTENTION_PREFIX}{layer}"][0, head] for layer, head in settings.heads])
    times = token_times(weights[:, input_length:], num_frames, settings.median_filter_width)
    return times[:generated]


# -- tokens -> words (transformers' _collate_word_timestamps and helpers) ----------------------------------------
Decode = Callable[[list[int]], str]


def combine_tokens_into_words(
    decode: Decode, tokens: list[int], language: str | None, eot: int
) -> tuple[list[str], list[list[int]]]:
    """(words, token indices of each word): split at spaces and punctuation (or at whole unicode
    characters for languages written without spaces), punctuation merged into its neighbour."""
    if language in NO_SPACE_LANGUAGES:
        words, word_tokens, indices = _split_on_unicode(decode, tokens)
    else:
        words, word_tokens, indices = _split_on_spaces(decode, tokens, eot)
    _merge_punctuations(words, word_tokens, indices)
    return words, indices


def collate_word_timestamps(
    decode: Decode,
    tokens: list[int],
    times: list[tuple[float, float]],
    language: str | None,
    return_language: bool,
    eot: int,
) -> list[dict[str, Any]]:
    """Word chunks ``{"text", "timestamp": (start, end)[, "language"]}`` from tokens and their (start, end)."""
    words, indices = combine_tokens_into_words(decode, tokens, language or "english", eot)
    extra = {"language": language} if return_language else {}
    return [
        {"text": word, "timestamp": (times[idx[0]][0], times[idx[-1]][1]), **extra} for word, idx in zip(words, indices)
    ]


def _split_on_unicode(decode: Decode, tokens: list[int]) -> tuple[list[str], list[list[int]], list[list[int]]]:
    full = decode(tokens)
    replacement = "\ufffd"
    words: list[str] = []
    word_tokens: list[list[int]] = []
    indices: list[list[int]] = []
    current: list[int] = []
    current_idx: list[int] = []
    offset = 0
    for idx, token in enumerate(tokens):
        current.append(token)
        current_idx.append(idx)
        decoded = decode(current)
        if replacement not in decoded or full[offset + decoded.index(replacement)] == replacement:
            words.append(decoded)
            word_tokens.append(current)
            indices.append(current_idx)
            current, current_idx = [], []
            offset += len(decoded)
    return words, word_tokens, indices


def _split_on_spaces(decode: Decode, tokens: list[int], eot: int) -> tuple[list[str], list[list[int]], list[list[int]]]:
    subwords, subword_tokens, subword_indices = _split_on_unicode(decode, tokens)
    words: list[str] = []
    word_tokens: list[list[int]] = []
    indices: list[list[int]] = []
    for subword, toks, idx in zip(subwords, subword_tokens, subword_indices):
        special = toks[0] >= eot
        with_space = subword.startswith(" ")
        punctuation = subword.strip() in _PUNCTUATION
        if special or with_space or punctuation or not words:
            words.append(subword)
            word_tokens.append(toks)
            indices.append(idx)
        else:
            words[-1] += subword
            word_tokens[-1].extend(toks)
            indices[-1].extend(idx)
    return words, word_tokens, indices


def _merge_punctuations(words: list[str], tokens: list[list[int]], indices: list[list[int]]) -> None:
    i, j = len(words) - 2, len(words) - 1
    while i >= 0:  # opening punctuation joins the next word
        if words[i].startswith(" ") and words[i].strip() in PREPEND_PUNCTUATION:
            words[j] = words[i] + words[j]
            tokens[j] = tokens[i] + tokens[j]
            indices[j] = indices[i] + indices[j]
            words[i], tokens[i], indices[i] = "", [], []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):  # closing punctuation joins the previous word
        if not words[i].endswith(" ") and words[j] in APPEND_PUNCTUATION:
            words[i] += words[j]
            tokens[i] += tokens[j]
            indices[i] += indices[j]
            words[j], tokens[j], indices[j] = "", [], []
        else:
            i = j
        j += 1
    words[:] = [w for w in words if w]
    tokens[:] = [t for t in tokens if t]
    indices[:] = [x for x in indices if x]
