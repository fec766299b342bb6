"""Property-based tests of image input: any array, PIL image, bytes or string either gives the documented output
or raises InvalidInputError (never IndexError, TypeError, a PIL error or an onnxruntime error)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.vision.image import load_image

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]
SIDE = st.one_of(st.sampled_from([0, 1, 2, 31, 32, 33]), st.integers(1, 64))


@st.composite
def arrays(draw) -> np.ndarray:
    h, w = draw(SIDE), draw(SIDE)
    if draw(st.integers(0, 9)) == 0:
        h, w = draw(st.sampled_from([(1, 2000), (2000, 1), (2, 3000)]))
    shape = draw(st.sampled_from([(h, w), (h, w, 1), (h, w, 2), (h, w, 3), (h, w, 4), (h, w, 5), (1, h, w), (3, h, w)]))
    dtype = np.dtype(draw(st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool", "float16"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 255.0, 65535.0, 1e30]))
    values = rng.random(shape) * scale
    if draw(st.booleans()):
        values = np.floor(values)
    if values.size and draw(st.booleans()):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0]))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


@st.composite
def pil_images(draw) -> Image.Image:
    mode = draw(st.sampled_from(MODES))
    size = (draw(st.integers(1, 80)), draw(st.integers(1, 80)))
    base = Image.new(mode, size)
    data = draw(st.binary(min_size=len(base.tobytes()), max_size=len(base.tobytes())))
    return Image.frombytes(mode, size, data) if data else base


def encoded(image: Image.Image, fmt: str, cut: int) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt)
    blob = buf.getvalue()
    return blob[: max(0, len(blob) - cut)]


ANY_IMAGE = st.one_of(
    arrays(),
    pil_images(),
    st.builds(encoded, pil_images(), st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), st.integers(0, 400)),
    st.binary(max_size=300),
    st.text(max_size=40),
    st.none(),
    st.integers(),
    st.lists(st.none(), max_size=2),
)


@FAST
@given(ANY_IMAGE)
@example(np.zeros((0, 5), np.uint8))
@example(np.zeros((5, 5, 3), np.complex64))
@example("/tmp")
def test_load_image_gives_rgb_or_invalid_input(value):
    try:
        image = load_image(value)
    except InvalidInputError:
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


@pytest.fixture(scope="module")
def classify(tiny):
    return edgetf.pipeline("image-classification", tiny.get("vit-base").bundle)


@pytest.fixture(scope="module")
def detect(tiny):
    return edgetf.pipeline("object-detection", tiny.get("detr-resnet-50").bundle)


@pytest.fixture(scope="module")
def depth(tiny):
    return edgetf.pipeline("depth-estimation", tiny.get("glpn-nyu").bundle)


@FAST
@given(ANY_IMAGE)
def test_image_classification_scores_or_raises_invalid_input(classify, value):
    try:
        out = classify(value, top_k=None)
    except InvalidInputError:
        return
    rows = out if value is not None and isinstance(value, list) else [out]
    for labels in rows:
        scores = [d["score"] for d in labels]
        assert all(isinstance(d["label"], str) for d in labels)
        assert all(math.isfinite(s) and 0 <= s <= 1 for s in scores) and sum(scores) <= 1 + 1e-4


@FEW
@given(ANY_IMAGE, st.floats(0, 1))
@example(np.zeros((1, 2000, 3), np.uint8), 0.0)  # a 1 px high strip resizes to height 0
def test_object_detection_boxes_or_raises_invalid_input(detect, value, threshold):
    try:
        out = detect(value, threshold=threshold)
    except InvalidInputError:
        return
    for found in out if isinstance(value, list) else [out]:
        for d in found:
            assert threshold < d["score"] <= 1 and isinstance(d["label"], str)
            assert set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"} and all(
                isinstance(v, int) for v in d["box"].values()
            )


@FEW
@given(ANY_IMAGE)
def test_depth_map_has_the_input_size_or_raises_invalid_input(depth, value):
    try:
        out = depth(value)
    except InvalidInputError:
        return
    for item, image in zip(out if isinstance(value, list) else [out], value if isinstance(value, list) else [value]):
        size = load_image(image).size
        assert item["predicted_depth"].shape == size[::-1] and item["depth"].size == size
        assert np.isfinite(item["predicted_depth"]).all()
