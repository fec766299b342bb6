"""Pictures of vision outputs: detection boxes, segment overlays, colour-mapped depth.

Every ``draw_*`` function takes the input image (PIL) and the pipeline's output exactly as the pipeline
returns it for that image, and returns a new RGB image of the input's size; the input is not modified.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InvalidInputError

RGB = tuple[int, int, int]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive

# matplotlib's viridis at 9 evenly spaced points: perceptually uniform, lightness rises monotonically.
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
# Tableau 10, the usual categorical palette; more colours continue with golden-angle hues.
TABLEAU = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
SEGMENT_ALPHA = 0.5
LABEL_PAD = 2


def hex_rgb(code: str) -> RGB:
    """'#rrggbb' -> (r, g, b)."""
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


def palette(n: int) -> list[RGB]:
    """``n`` distinct colours: Tableau 10, then hues spaced by the golden angle."""
    colours = [hex_rgb(c) for c in TABLEAU[:n]]
    for i in range(len(colours), n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.8, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def colormap_lut(anchors: Sequence[str] = VIRIDIS, size: int = 256) -> np.ndarray:
    """A (size, 3) uint8 lookup table, linear in RGB between evenly spaced anchor colours."""
    points = np.array([hex_rgb(c) for c in anchors], dtype=np.float64)
    stops = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, size)
    channels = [np.interp(t, stops, points[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB values along the last axis."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@lru_cache(maxsize=1)
def font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def label_rect(text: str, x: int, y: int, image_size: tuple[int, int]) -> Rect:
    """The padded box of ``text`` with its top-left corner at (x, y), moved inside the image where it can be."""
    left, top, right, bottom = font().getbbox(text)
    w, h = int(right - left) + 2 * LABEL_PAD, int(bottom - top) + 2 * LABEL_PAD
    width, height = image_size
    x = max(0, min(int(x), width - w))
    y = max(0, min(int(y), height - h))
    return x, y, x + w - 1, y + h - 1


def draw_label(draw: ImageDraw.ImageDraw, rect: Rect, text: str, colour: RGB) -> None:
    """``text`` on a filled ``colour`` box, in black or white, whichever reads better."""
    draw.rectangle(rect, fill=colour)
    ink = (0, 0, 0) if luma(np.array(colour)) > 140 else (255, 255, 255)
    left, top, _, _ = font().getbbox(text)
    draw.text((rect[0] + LABEL_PAD - left, rect[1] + LABEL_PAD - top), text, fill=ink, font=font())


def caption(label: Any, score: Any) -> str:
    return str(label) if score is None else f"{label} {float(score):.2f}"


# -- object detection -----------------------------------------------------------------------------------
def clip_box(box: Mapping[str, Any], image_size: tuple[int, int]) -> Rect | None:
    """The box's corners clipped to the image, or None when no part of it is inside."""
    try:
        x0, y0, x1, y1 = (int(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"a detection box must be {{xmin, ymin, xmax, ymax}} numbers, got {box!r}") from exc
    width, height = image_size
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
        return None
    return max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)


def line_width(image_size: tuple[int, int]) -> int:
    return max(2, round(max(image_size) / 300))


def detection_label_rect(text: str, box: Rect, image_size: tuple[int, int]) -> Rect:
    """Where a detection's caption goes: just above the box, or inside its top edge when there is no room."""
    _, _, _, bottom = label_rect(text, 0, 0, image_size)
    above = box[1] - (bottom + 1)
    return label_rect(text, box[0], above if above >= 0 else box[1], image_size)


def draw_detections(image: Image.Image, detections: Sequence[Mapping[str, Any]]) -> Image.Image:
    """Each box outlined in its label's colour, with "label score" above it; boxes are clipped to the image."""
    out = image.convert("RGB")
    labels = list(dict.fromkeys(str(_field(d, "label", "detection")) for d in detections))
    colours = dict(zip(labels, palette(len(labels))))
    draw = ImageDraw.Draw(out)
    width = line_width(out.size)
    placed = []
    for det in detections:
        box = clip_box(_field(det, "box", "detection"), out.size)
        if box is None:
            continue
        colour = colours[str(det["label"])]
        draw.rectangle(box, outline=colour, width=width)
        placed.append((box, caption(det["label"], det.get("score")), colour))
    for box, text, colour in placed:  # captions last, so no box line crosses one
        draw_label(draw, detection_label_rect(text, box, out.size), text, colour)
    return out


# -- image segmentation ----------------------------------------------------------------------------------
def mask_array(mask: Any, image_size: tuple[int, int]) -> np.ndarray:
    """A segment mask (L-mode PIL image or 2-D array, nonzero = inside) as a bool (height, width) array."""
    array = np.asarray(mask)
    if array.ndim != 2 or array.shape != (image_size[1], image_size[0]):
        raise InvalidInputError(
            f"a segment mask must be a 2-D image of the input's size {image_size[0]}x{image_size[1]}, "
            f"got shape {array.shape}"
        )
    return array > 0


def mask_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) for a mask's caption: its centroid, or the mask pixel nearest to it; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    cx, cy = int(round(float(xs.mean()))), int(round(float(ys.mean())))
    if mask[cy, cx]:
        return cx, cy
    nearest = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return int(xs[nearest]), int(ys[nearest])


def segment_label_rect(text: str, anchor: tuple[int, int], image_size: tuple[int, int]) -> Rect:
    """A caption box centred on ``anchor``, moved inside the image."""
    x0, y0, x1, y1 = label_rect(text, 0, 0, image_size)
    return label_rect(text, anchor[0] - (x1 - x0 + 1) // 2, anchor[1] - (y1 - y0 + 1) // 2, image_size)


def tint(pixels: np.ndarray, mask: np.ndarray, colour: RGB, alpha: float = SEGMENT_ALPHA) -> None:
    """Blend ``colour`` over the float (H, W, 3) ``pixels`` where ``mask`` is set, in place."""
    pixels[mask] = pixels[mask] * (1.0 - alpha) + np.asarray(colour, dtype=np.float32) * alpha


def draw_segments(image: Image.Image, segments: Sequence[Mapping[str, Any]]) -> Image.Image:
    """Each segment's mask tinted with its own colour (half transparent; later segments over earlier ones),
    its "label score" written at the mask's centroid."""
    base = image.convert("RGB")
    pixels = np.asarray(base, dtype=np.float32).copy()
    colours = palette(len(segments))
    captions = []
    for seg, colour in zip(segments, colours):
        mask = mask_array(_field(seg, "mask", "segment"), base.size)
        tint(pixels, mask, colour)
        anchor = mask_anchor(mask)
        if anchor is not None:
            captions.append((anchor, caption(_field(seg, "label", "segment"), seg.get("score")), colour))
    out = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(out)
    for anchor, text, colour in captions:
        draw_label(draw, segment_label_rect(text, anchor, out.size), text, colour)
    return out


# -- depth estimation ------------------------------------------------------------------------------------
def nearness(depth: np.ndarray) -> np.ndarray:
    """Depth (larger = farther, as GLPN's metric depth) -> [0, 1] with 1 = nearest.

    A constant map gives 0.5 everywhere; NaN or infinite pixels give 0 (drawn as far)."""
    depth = np.asarray(depth, dtype=np.float64)
    finite = np.isfinite(depth)
    out = np.zeros(depth.shape, dtype=np.float64)
    if not finite.any():
        return out
    low, high = float(depth[finite].min()), float(depth[finite].max())
    if high > low:
        out[finite] = (high - depth[finite]) / (high - low)
    else:
        out[finite] = 0.5
    return out


def colorize(unit: np.ndarray, lut: np.ndarray | None = None) -> Image.Image:
    """A [0, 1] (H, W) map through the colormap (viridis by default) as an RGB image."""
    table = colormap_lut() if lut is None else lut
    index = np.rint(np.clip(unit, 0.0, 1.0) * (len(table) - 1)).astype(np.intp)
    return Image.fromarray(table[index], "RGB")


def draw_depth(image: Image.Image, output: Mapping[str, Any]) -> Image.Image:
    """The predicted depth colour-mapped with viridis, near = bright, at the input image's size."""
    depth = np.asarray(_field(output, "predicted_depth", "depth-estimation output"))
    depth = np.squeeze(depth) if depth.ndim > 2 else depth
    if depth.ndim != 2 or depth.size == 0:
        raise InvalidInputError(f"predicted_depth must be a 2-D (height, width) map, got shape {depth.shape}")
    picture = colorize(nearness(depth))
    if picture.size != image.size:
        picture = picture.resize(image.size, Image.Resampling.BILINEAR)
    return picture


def _field(record: Any, key: str, what: str) -> Any:
    """``record[key]``, or InvalidInputError naming what the record is instead."""
    if not isinstance(record, Mapping) or key not in record:
        got = f"keys {sorted(map(str, record))}" if isinstance(record, Mapping) else type(record).__name__
        raise InvalidInputError(f"each {what} must be a dict with a {key!r} key (as the pipeline returns), got {got}")
    return record[key]


# The tasks whose outputs can be drawn (``python -m edgetf run ... --save``).
DRAWERS: dict[str, Callable[[Image.Image, Any], Image.Image]] = {
    "object-detection": draw_detections,
    "image-segmentation": draw_segments,
    "depth-estimation": draw_depth,
}
