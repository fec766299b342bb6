"""Test helpers shared across task test files: a structural comparator, the varied image set, rect masks."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from edgetf.vision.samples import gradient, noise, shapes


def close(a, b, tol=1e-4) -> bool:
    """Same structure, same strings, floats within tol."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, float) and math.isclose(a, b, abs_tol=tol)
    return a == b


def assert_random_gate(q8: dict, min_inputs: int) -> None:
    """A tiny (random-weight) bundle's q8 report: judged on output closeness to the fp32 graph on the same
    feeds (export/gates.py), never on argmax agreement; the agreement is still measured and recorded."""
    assert q8["passed"] and q8["gate"] == "random" and q8["weights"] == "random"
    assert q8["feeds_compared"] >= 1 and 0 < q8["output_rel_error"] <= q8["tolerance"]["output_rel_error"]
    assert q8["n"] >= min_inputs and 0.0 <= q8["agreement"] <= 1.0 and q8["max_diff"] > 0


def _base() -> Image.Image:
    return shapes(150, 100)


def _rgba() -> Image.Image:
    rgba = _base()
    rgba.putalpha(gradient(150, 100).convert("L"))
    return rgba


_IMAGES: dict[str, Callable[[], Image.Image]] = {
    "shapes 320x240": lambda: shapes(320, 240),
    "gradient 96x96": lambda: gradient(96, 96),
    "noise 123x77": lambda: noise(123, 77, seed=1),
    "tall 40x150": lambda: shapes(40, 150),
    "tiny 8x8": lambda: noise(8, 8, seed=2),
    "exact 64x32": lambda: noise(64, 32, seed=2),
    "large 2000x1500": lambda: shapes(2000, 1500),
    "L": lambda: _base().convert("L"),
    "LA": lambda: _rgba().convert("LA"),
    "P": lambda: _base().convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
    "RGBA": _rgba,
    "CMYK": lambda: _base().convert("CMYK"),
    "I;16": lambda: Image.fromarray((np.asarray(_base().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)),
}


def varied_images(*names: str) -> dict[str, Image.Image]:
    """The named test images (gradients, shapes, noise, odd sizes, every PIL mode), built on demand."""
    return {name: _IMAGES[name]() for name in names}


def rect_mask(shape: tuple[int, int], rect: tuple[int, int, int, int], grow: int = 0) -> np.ndarray:
    """Bool (height, width) mask of an inclusive (x0, y0, x1, y1) rect, grown by ``grow`` pixels on every side."""
    mask = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = rect
    mask[max(y0 - grow, 0) : y1 + grow + 1, max(x0 - grow, 0) : x1 + grow + 1] = True
    return mask
