"""Deterministic generated images: the demo input and the parity-check inputs (no files shipped)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def gradient(width: int, height: int) -> Image.Image:
    """Horizontal red, vertical green and diagonal blue ramps."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, (x + y) / 2], axis=-1)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def shapes(width: int, height: int) -> Image.Image:
    """A gradient with a filled ellipse, a rectangle, a triangle and a few lines on it."""
    image = gradient(width, height)
    draw = ImageDraw.Draw(image)
    w, h = width, height
    draw.ellipse((w * 0.1, h * 0.15, w * 0.45, h * 0.6), fill=(220, 40, 40))
    draw.rectangle((w * 0.55, h * 0.1, w * 0.9, h * 0.45), fill=(30, 60, 200))
    draw.polygon([(w * 0.2, h * 0.9), (w * 0.5, h * 0.55), (w * 0.8, h * 0.9)], fill=(250, 220, 30))
    for i in range(4):
        draw.line((0, h * (0.2 + 0.2 * i), w, h * (0.1 + 0.25 * i)), fill=(10, 10, 10), width=max(1, w // 64))
    return image


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def demo_image() -> Image.Image:
    """The built-in sample of ``python -m edgetf demo``: shapes on a gradient, 4:3."""
    return shapes(320, 240)


def parity_images() -> list[tuple[str, Image.Image]]:
    """Named inputs of the export-time parity checks: varied content, sizes and aspect ratios."""
    return [
        ("shapes 320x240", shapes(320, 240)),
        ("gradient 96x96", gradient(96, 96)),
        ("noise 200x120", noise(200, 120, seed=1)),
        ("shapes tall 90x260", shapes(90, 260)),
        ("noise 64x64", noise(64, 64, seed=2)),
        ("shapes 640x480", shapes(640, 480)),
    ]
