"""Run token-level models over many encodings in padded batches, and give each encoding its own outputs back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .tokenizer import pad_batch

Run = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def run_in_batches(
    encodings: Sequence[Any],
    run: Run,
    *,
    pad_token_id: int,
    padding_side: str = "right",
    batch_size: int = 1,
    min_length: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """``run(feeds)`` on batches of ``batch_size`` encodings padded to the longest (at least
    ``min_length``); returns, per encoding, every output cut to that encoding's own tokens
    (outputs are (batch, seq, ...) arrays)."""
    results: list[dict[str, np.ndarray]] = []
    for first in range(0, len(encodings), batch_size):
        chunk = encodings[first : first + batch_size]
        feeds = pad_batch([e.ids for e in chunk], [e.type_ids for e in chunk], pad_token_id, padding_side)
        extra = (min_length or 0) - feeds["input_ids"].shape[1]
        if extra > 0:
            where = (extra, 0) if padding_side == "left" else (0, extra)
            for name, value in feeds.items():
                fill = pad_token_id if name == "input_ids" else 0
                feeds[name] = np.pad(value, ((0, 0), where), constant_values=fill)
        outputs = run(feeds)
        width = feeds["input_ids"].shape[1]
        for row, enc in enumerate(chunk):
            n = len(enc.ids)
            span = slice(width - n, width) if padding_side == "left" else slice(0, n)
            results.append({name: value[row, span] for name, value in outputs.items()})
    return results
