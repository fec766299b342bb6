"""torch.nn.functional.interpolate in numpy, for the post-processing of segmentation and depth maps.

Same sampling as PyTorch's CPU kernels with ``align_corners=False`` and no antialiasing: source
coordinates, clamping and weights are computed in float32 as PyTorch's compiled kernels do (with
fused multiply-adds), and the separable sums in the same order, so results agree with PyTorch to
about one float32 ulp (its vectorized loops may round a sum differently); ``nearest`` is exact.
Every function resizes the last two axes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

F32 = np.float32


def _scale(in_size: int, out_size: int) -> np.float32:
    return F32(in_size) / F32(out_size)


def _fma(a: Any, b: Any, c: Any) -> np.ndarray:
    """float32 a * b + c with a single rounding, as the FMA instructions PyTorch's kernels compile to."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(F32)


def _source_index(in_size: int, out_size: int) -> np.ndarray:
    """``scale * (dst + 0.5) - 0.5`` in float32 with one rounding (PyTorch's kernels compile it to an FMA)."""
    return _fma(_scale(in_size, out_size), np.arange(out_size).astype(F32) + F32(0.5), F32(-0.5))


@lru_cache(maxsize=64)
def linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of linear interpolation along one axis: (i0, i1, w0, w1)."""
    dst = np.arange(out_size)
    if in_size == out_size:
        return dst, dst, np.ones(out_size, F32), np.zeros(out_size, F32)
    real = _source_index(in_size, out_size)
    real = np.where(real < 0, F32(0), real).astype(F32)
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    w1 = np.clip(real - i0.astype(F32), F32(0), F32(1)).astype(F32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (F32(1) - w1).astype(F32), w1


@lru_cache(maxsize=16)
def cubic_taps(in_size: int, out_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Indices (clamped to the border) and weights (A = -0.75) of bicubic interpolation along one axis."""
    real = _source_index(in_size, out_size)
    base = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    t = np.clip(real - base.astype(F32), F32(0), F32(1)).astype(F32)
    a = F32(-0.75)

    def conv1(x: np.ndarray) -> np.ndarray:  # |x| <= 1: ((a + 2) x - (a + 3)) x x + 1
        return _fma(_fma(a + F32(2), x, -(a + F32(3))) * x, x, F32(1))

    def conv2(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2: ((a x - 5a) x + 8a) x - 4a
        return _fma(_fma(_fma(a, x, -F32(5) * a), x, F32(8) * a), x, -F32(4) * a)

    weights = [conv2(t + F32(1)), conv1(t), conv1(F32(1) - t), conv2((F32(1) - t) + F32(1))]
    indices = [np.clip(base - 1 + j, 0, in_size - 1) for j in range(4)]
    return indices, [w.astype(F32) for w in weights]


@lru_cache(maxsize=64)
def nearest_taps(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output position for mode="nearest" (PyTorch's legacy rule)."""
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    src = np.floor(dst.astype(F32) * _scale(in_size, out_size)).astype(np.int64)
    return np.minimum(src, in_size - 1)


def bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of a float32 array to ``size`` (bilinear, align_corners=False).

    Columns are interpolated first, then rows (PyTorch's order); when upsampling rows, each source
    row is column-interpolated once and the results gathered, which gives the same values for less work.
    """
    x = np.asarray(x, dtype=F32)
    yi0, yi1, wy0, wy1 = linear_taps(x.shape[-2], size[0])
    xi0, xi1, wx0, wx1 = linear_taps(x.shape[-1], size[1])

    def columns(rows: np.ndarray) -> np.ndarray:
        return np.take(rows, xi0, axis=-1) * wx0 + np.take(rows, xi1, axis=-1) * wx1

    if size[0] > x.shape[-2]:
        interpolated = columns(x)
        t0, t1 = np.take(interpolated, yi0, axis=-2), np.take(interpolated, yi1, axis=-2)
    else:
        t0, t1 = columns(np.take(x, yi0, axis=-2)), columns(np.take(x, yi1, axis=-2))
    return t0 * wy0[:, None] + t1 * wy1[:, None]


def bicubic(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of a float32 array to ``size`` (bicubic, A=-0.75, align_corners=False)."""
    x = np.asarray(x, dtype=F32)
    yi, wy = cubic_taps(x.shape[-2], size[0])
    xi, wx = cubic_taps(x.shape[-1], size[1])
    out = None
    for j in range(4):
        rows = np.take(x, yi[j], axis=-2)
        t = np.take(rows, xi[0], axis=-1) * wx[0]
        for i in range(1, 4):
            t = t + np.take(rows, xi[i], axis=-1) * wx[i]
        term = t * wy[j][:, None]
        out = term if out is None else out + term
    return out  # type: ignore[return-value]


def nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes to ``size`` (mode="nearest")."""
    rows = nearest_taps(x.shape[-2], size[0])
    cols = nearest_taps(x.shape[-1], size[1])
    return x[..., rows[:, None], cols[None, :]]
