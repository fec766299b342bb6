"""Long audio in overlapping chunks, as transformers' ASR pipeline (``chunk_length_s`` / ``stride_length_s``).

Each chunk is ``chunk_length_s`` long and overlaps its neighbours by ``stride_length_s`` on each side;
the overlap is used as context and then dropped (CTC) or merged (Whisper) when the chunk outputs are
joined. Lengths are aligned to the model's input-to-output ratio, as the reference does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Chunk:
    samples: np.ndarray
    stride: tuple[int, int, int]  # (chunk length, left overlap, right overlap) in samples
    is_last: bool


MAX_CHUNK_S = 3600  # an hour per chunk: far beyond any model's window, small enough to count in samples


def _seconds(value: Any) -> bool:
    """A real, finite number of seconds no larger than MAX_CHUNK_S (sign checked by the caller)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and abs(value) <= MAX_CHUNK_S


def chunk_sizes(
    chunk_length_s: Any, stride_length_s: Any, sampling_rate: int, align_to: int = 1
) -> tuple[int, int, int]:
    """(chunk, left stride, right stride) in samples; the strides default to chunk_length_s / 6."""
    if not _seconds(chunk_length_s) or chunk_length_s <= 0:
        raise InvalidInputError(
            f"chunk_length_s must be a positive number of seconds up to {MAX_CHUNK_S}, got {chunk_length_s!r}"
        )
    if stride_length_s is None:
        stride_length_s = chunk_length_s / 6
    if isinstance(stride_length_s, (int, float)) and not isinstance(stride_length_s, bool):
        stride_length_s = [stride_length_s, stride_length_s]
    ok = isinstance(stride_length_s, (list, tuple)) and len(stride_length_s) == 2
    ok = ok and all(_seconds(s) and s >= 0 for s in stride_length_s)
    if not ok:
        raise InvalidInputError(
            f"stride_length_s must be a non-negative number or a (left, right) pair, got {stride_length_s!r}"
        )

    def samples(seconds: float) -> int:
        return int(round(seconds * sampling_rate / align_to) * align_to)

    chunk_len, left, right = samples(chunk_length_s), samples(stride_length_s[0]), samples(stride_length_s[1])
    if chunk_len < left + right:
        raise InvalidInputError(
            f"chunk_length_s={chunk_length_s} must be longer than both strides together ({stride_length_s})"
        )
    if chunk_len - left - right <= 0:
        raise InvalidInputError(
            f"chunk_length_s={chunk_length_s} leaves no audio between the strides {stride_length_s}; "
            "use a longer chunk or shorter strides"
        )
    return chunk_len, left, right


def iter_chunks(samples: np.ndarray, chunk_len: int, stride_left: int, stride_right: int) -> Iterator[Chunk]:
    """Overlapping chunks; a chunk no longer than its left stride is skipped, as the reference does."""
    n = samples.shape[0]
    step = chunk_len - stride_left - stride_right
    for start in range(0, n, step):
        end = start + chunk_len
        piece = samples[start:end]
        is_last = end >= n
        stride = (piece.shape[0], 0 if start == 0 else stride_left, 0 if is_last else stride_right)
        if piece.shape[0] > stride[1]:
            yield Chunk(piece, stride, is_last)
        if is_last:
            break


def rescale_stride(stride: tuple[int, int, int], ratio: float) -> tuple[int, int, int]:
    """A (length, left, right) stride from samples to model output frames: (160000, 16000, 16000) -> (500, 50, 50)."""
    length, left, right = stride
    frames = int(round(length * ratio))
    return frames, int(round(left / length * frames)), int(round(right / length * frames))
