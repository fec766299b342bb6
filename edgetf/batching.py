"""The one check of a ``batch_size`` option and the slicing of inputs into batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .errors import InvalidInputError


def check_batch_size(value: Any) -> int:
    """``value`` as a batch size: an int >= 1 (not a bool), else InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"batch_size must be an integer >= 1, got {value!r}")
    return value


def batched(items: Sequence[Any], size: Any) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of length ``size`` (the last may be shorter)."""
    size = check_batch_size(size)
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
