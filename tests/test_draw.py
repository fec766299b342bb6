"""edgetf.vision.draw on hand-made outputs: boxes, segment overlays, colour-mapped depth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import rect_mask
from PIL import Image

from edgetf.errors import InvalidInputError
from edgetf.vision.draw import (
    DRAWERS,
    VIRIDIS,
    caption,
    clip_box,
    colormap_lut,
    detection_label_rect,
    draw_depth,
    draw_detections,
    draw_segments,
    hex_rgb,
    line_width,
    luma,
    mask_anchor,
    nearness,
    palette,
    segment_label_rect,
)
from edgetf.vision.samples import gradient


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def perimeter(rect: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    """(y, x) of an inclusive rect's outline."""
    x0, y0, x1, y1 = rect
    return (
        [(y0, x) for x in range(x0, x1 + 1)]
        + [(y1, x) for x in range(x0, x1 + 1)]
        + [(y, x0) for y in range(y0, y1 + 1)]
        + [(y, x1) for y in range(y0, y1 + 1)]
    )


def test_palette_colours_are_distinct():
    colours = palette(40)
    assert len(set(colours)) == 40 and all(0 <= c <= 255 for rgb in colours for c in rgb)
    assert palette(3) == palette(40)[:3]


def test_viridis_lut_is_monotonic_in_luminance():
    lut = colormap_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == hex_rgb(VIRIDIS[0]) and tuple(lut[-1]) == hex_rgb(VIRIDIS[-1])
    y = luma(lut)
    assert np.all(np.diff(y) >= 0) and y[-1] - y[0] > 150


def test_detections_outline_boxes_and_leave_the_rest_alone():
    image = gradient(200, 150)
    before = pixels(image)
    detections = [
        {"score": 0.9, "label": "cat", "box": {"xmin": 20, "ymin": 40, "xmax": 80, "ymax": 100}},
        {"score": 0.8, "label": "dog", "box": {"xmin": 150, "ymin": 90, "xmax": 260, "ymax": 170}},  # clipped
        {"score": 0.7, "label": "cat", "box": {"xmin": 100, "ymin": 30, "xmax": 120, "ymax": 60}},
    ]
    out = draw_detections(image, detections)
    after = pixels(out)
    assert out.size == image.size and out.mode == "RGB"
    assert np.array_equal(pixels(image), before)  # the input is untouched
    near = np.zeros(after.shape[:2], dtype=bool)
    cat, dog = palette(2)
    for det, colour in zip(detections, (cat, dog, cat)):
        box = clip_box(det["box"], image.size)
        label = detection_label_rect(caption(det["label"], det["score"]), box, image.size)
        near |= rect_mask(near.shape, box, grow=1) | rect_mask(near.shape, label, grow=1)
        changed = [np.any(after[y, x] != before[y, x]) for y, x in perimeter(box)]
        assert np.mean(changed) > 0.9
        mid = (box[1] + box[3]) // 2  # the left edge at mid-height: no caption there
        assert tuple(after[mid, box[0]]) == colour
        x0, y0, x1, y1 = label  # the caption: text on a box of the label's colour
        caption_pixels = after[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
        assert 0.4 < np.mean(np.all(caption_pixels == colour, axis=-1)) < 1
    assert near.mean() < 0.6  # the check below covers a good part of the image
    assert np.array_equal(after[~near], before[~near])


def test_detection_box_outside_the_image_is_clipped_or_skipped():
    image = gradient(100, 80)
    assert clip_box({"xmin": -30, "ymin": -5, "xmax": 40, "ymax": 500}, image.size) == (0, 0, 40, 79)
    assert clip_box({"xmin": 100, "ymin": 0, "xmax": 140, "ymax": 10}, image.size) is None
    assert clip_box({"xmin": 50, "ymin": 60, "xmax": 10, "ymax": 20}, image.size) == (10, 20, 50, 60)
    outside = [{"score": 0.5, "label": "car", "box": {"xmin": -50, "ymin": -50, "xmax": -1, "ymax": 70}}]
    assert np.array_equal(pixels(draw_detections(image, outside)), pixels(image))
    partial = [{"score": 0.5, "label": "car", "box": {"xmin": -50, "ymin": 30, "xmax": 60, "ymax": 300}}]
    after = pixels(draw_detections(image, partial))
    assert tuple(after[50, 0]) == palette(1)[0] and tuple(after[79, 30]) == palette(1)[0]


def test_zero_detections_give_a_copy_of_the_input():
    image = gradient(64, 48).convert("L")
    out = draw_detections(image, [])
    assert out is not image and out.mode == "RGB" and np.array_equal(pixels(out), pixels(image))


def test_line_width_grows_with_the_image():
    assert line_width((100, 80)) == 2 and line_width((3000, 2000)) == 10


def test_bad_outputs_are_refused_clearly():
    image = gradient(32, 32)
    with pytest.raises(InvalidInputError, match="'box'"):
        draw_detections(image, [{"score": 0.5, "label": "x"}])
    with pytest.raises(InvalidInputError, match="xmin"):
        draw_detections(image, [{"score": 0.5, "label": "x", "box": {"x": 1}}])
    with pytest.raises(InvalidInputError, match="'label'"):
        draw_detections(image, [[{"score": 0.5}]])  # a batch's list of lists, not one image's list
    with pytest.raises(InvalidInputError, match="input's size 32x32"):
        draw_segments(image, [{"score": None, "label": "sky", "mask": Image.new("L", (16, 32), 255)}])
    with pytest.raises(InvalidInputError, match="predicted_depth"):
        draw_depth(image, {"depth": image})
    with pytest.raises(InvalidInputError, match="2-D"):
        draw_depth(image, {"predicted_depth": np.zeros((2, 3, 4))})


def blend(base: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return base * 0.5 + np.asarray(colour) * 0.5


def test_segments_tint_their_masks_and_overlaps_stack():
    image = gradient(160, 120)
    before = pixels(image).astype(np.float64)
    a = np.zeros((120, 160), dtype=bool)
    a[10:70, 10:90] = True
    b = np.zeros((120, 160), dtype=bool)
    b[40:110, 60:150] = True
    empty = np.zeros((120, 160), dtype=bool)
    segments = [
        {"score": 0.9, "label": "sky", "mask": Image.fromarray(a.astype(np.uint8) * 255, "L")},
        {"score": None, "label": "road", "mask": Image.fromarray(b.astype(np.uint8) * 255, "L")},
        {"score": 0.1, "label": "nothing", "mask": Image.fromarray(empty.astype(np.uint8) * 255, "L")},
    ]
    out = draw_segments(image, segments)
    after = pixels(out)
    assert out.size == image.size and np.array_equal(pixels(image), before.astype(np.int16))
    labels = np.zeros(a.shape, dtype=bool)
    for seg, mask in zip(segments[:2], (a, b)):
        rect = segment_label_rect(caption(seg["label"], seg["score"]), mask_anchor(mask), image.size)
        labels |= rect_mask(a.shape, rect)
    ca, cb = palette(3)[:2]
    only_a, only_b, both = a & ~b & ~labels, b & ~a & ~labels, a & b & ~labels
    assert only_a.sum() > 500 and only_b.sum() > 500 and both.sum() > 300
    assert np.abs(after[only_a] - blend(before[only_a], ca)).max() <= 1
    assert np.abs(after[only_b] - blend(before[only_b], cb)).max() <= 1
    assert np.abs(after[both] - blend(blend(before[both], ca), cb)).max() <= 1
    outside = ~a & ~b & ~labels
    assert outside.sum() > 3000 and np.array_equal(after[outside], before[outside].astype(np.int16))
    assert np.any(after[labels] != before[labels])  # captions are written


def test_mask_anchor_lies_inside_the_mask():
    ring = np.zeros((50, 50), dtype=bool)
    ring[5:45, 5:45] = True
    ring[10:40, 10:40] = False  # the centroid (25, 25) is in the hole
    x, y = mask_anchor(ring)
    assert ring[y, x]
    blob = np.zeros((50, 50), dtype=bool)
    blob[20:31, 30:41] = True
    assert mask_anchor(blob) == (35, 25)
    assert mask_anchor(np.zeros((5, 5), dtype=bool)) is None


def test_no_segments_give_a_copy_of_the_input():
    image = gradient(40, 30)
    assert np.array_equal(pixels(draw_segments(image, [])), pixels(image))


def test_depth_near_is_bright_at_the_input_size():
    image = gradient(120, 90)
    depth = np.tile(np.linspace(1.0, 9.0, 120, dtype=np.float32), (90, 1))  # farther to the right
    out = draw_depth(image, {"predicted_depth": depth, "depth": None})
    assert out.size == image.size and out.mode == "RGB"
    y = luma(pixels(out))[0]
    assert np.all(np.diff(y) <= 0) and y[0] - y[-1] > 150
    assert tuple(pixels(out)[0, 0]) == hex_rgb(VIRIDIS[-1])
    small = draw_depth(image, {"predicted_depth": depth[::3, ::3]})  # resized to the image
    assert small.size == image.size


def test_constant_or_broken_depth_maps_draw_without_nan():
    image = gradient(30, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = draw_depth(image, {"predicted_depth": np.full((20, 30), 3.0, dtype=np.float32)})
        broken = np.full((20, 30), 2.0)
        broken[0, 0], broken[0, 1], broken[5, 5] = np.nan, np.inf, 4.0
        unit = nearness(broken)
        nothing = nearness(np.full((3, 3), np.nan))
    assert len(np.unique(pixels(flat).reshape(-1, 3), axis=0)) == 1
    assert np.isfinite(unit).all() and unit[0, 0] == 0 and unit[5, 5] == 0 and unit[1, 1] == 1
    assert np.array_equal(nothing, np.zeros((3, 3)))
    assert np.array_equal(nearness(np.full((2, 2), 7.0)), np.full((2, 2), 0.5))


def test_drawers_cover_the_vision_tasks_with_pictures():
    assert set(DRAWERS) == {"object-detection", "image-segmentation", "depth-estimation"}
