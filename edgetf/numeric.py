"""Numeric helpers shared by the task heads and the generation loops: softmax, log-softmax, sigmoid.

All work on the last axis by default and keep the input's dtype (callers cast to float32 where the
reference does). A row whose maximum is not finite is shifted by 0 instead of by its maximum, as torch does.
"""

from __future__ import annotations

import numpy as np


def _shift(x: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    return x - np.where(np.isfinite(peak), peak, 0).astype(x.dtype)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(_shift(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = _shift(x, axis)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
