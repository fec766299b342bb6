"""Stopping criteria: ``(input_ids) -> bool per row``; a row is done when any criterion says so."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class StoppingCriterion(Protocol):
    def __call__(self, input_ids: np.ndarray) -> np.ndarray: ...


class StoppingCriteriaList(list):
    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        done = np.zeros(input_ids.shape[0], dtype=bool)
        for criterion in self:
            done |= criterion(input_ids)
        return done


class MaxLength:
    def __init__(self, max_length: int):
        self.max_length = int(max_length)

    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        return np.full(input_ids.shape[0], input_ids.shape[1] >= self.max_length)


class EosToken:
    def __init__(self, eos_ids: Sequence[int]):
        self.eos_ids = np.asarray(list(eos_ids), dtype=np.int64)

    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        return np.isin(input_ids[:, -1], self.eos_ids)


class StopStrings:
    """Done when a stop string appears in the decoded text and overlaps the last token.

    This is the rule of transformers' StopStringCriteria (a stop string is matched only if the final
    token contributes to it), applied to decoded text instead of the token vocabulary.
    """

    def __init__(self, stop_strings: str | Sequence[str], decode: Callable[[list[int]], str]):
        self.stops = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        self.decode = decode
        self.window = max(len(s) for s in self.stops) + 8  # tokens: enough to hold the longest stop string

    def matches(self, tokens: list[int]) -> bool:
        tail = tokens[-self.window :]
        text = self.decode(tail)
        before = self.decode(tail[:-1])
        common = 0
        for a, b in zip(before, text):
            if a != b:
                break
            common += 1
        for stop in self.stops:
            start = text.find(stop)
            while start != -1:
                if start + len(stop) > common:
                    return True
                start = text.find(stop, start + 1)
        return False

    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        return np.array([self.matches(row) for row in input_ids.tolist()], dtype=bool)
