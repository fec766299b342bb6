"""depth-estimation parity with transformers' pipeline: GLPN, tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import varied_images
from PIL import Image
from transformers.image_utils import load_image as hf_load_image

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.depth_estimation import depth_image, post_process_depth
from edgetf.vision.samples import noise, shapes

MODEL = "glpn-nyu"


IMAGES = (
    "shapes 320x240",
    "gradient 96x96",
    "noise 123x77",
    "tall 40x150",
    "exact 64x32",
    "L",
    "P",
    "RGBA",
    "CMYK",
    "I;16",
)


@pytest.fixture(scope="module")
def pair(tiny, reference):
    built = tiny.get(MODEL)
    return reference("depth-estimation", built), edgetf.pipeline("depth-estimation", built.bundle, dtype="fp32")


def compare(got, expected, name):
    """predicted_depth within 1e-4; the 8-bit depth image within one level (truncation of float noise)."""
    assert set(got) == {"predicted_depth", "depth"}
    ref_depth = expected["predicted_depth"].numpy()
    assert isinstance(got["predicted_depth"], np.ndarray) and got["predicted_depth"].dtype == np.float32
    assert got["predicted_depth"].shape == ref_depth.shape, name
    diff = float(np.abs(got["predicted_depth"] - ref_depth).max())
    assert diff <= 1e-4, (name, diff)
    a, b = np.asarray(got["depth"], dtype=np.int16), np.asarray(expected["depth"], dtype=np.int16)
    assert got["depth"].mode == expected["depth"].mode == "L" and got["depth"].size == expected["depth"].size
    assert np.abs(a - b).max() <= 1, name
    return diff, float(np.mean(a != b))


def test_fp32_depth_matches_on_varied_images(pair):
    ref, pipe = pair
    worst, mismatch = 0.0, 0.0
    for name, image in varied_images(*IMAGES).items():
        inputs = ref.image_processor(images=hf_load_image(image), return_tensors="pt")
        with torch.no_grad():
            raw = ref.model(**inputs).predicted_depth[0].numpy()
        ((got_raw, size),) = pipe.raw_outputs([image])
        assert size == (image.height, image.width)
        assert np.abs(got_raw - raw).max() <= 1e-4, name
        diff, share = compare(pipe(image), ref(image), name)
        worst, mismatch = max(worst, diff), max(mismatch, share)
    assert mismatch <= 0.01, mismatch  # pixels whose 8-bit level differs by one, at most 1%


def test_large_image_2000x1500(pair):
    ref, pipe = pair
    image = shapes(2000, 1500)
    compare(pipe(image), ref(image), "large")


def test_post_processing_alone_matches_transformers(pair):
    ref, _ = pair
    image = shapes(200, 130)
    inputs = ref.image_processor(images=image, return_tensors="pt")
    with torch.no_grad():
        out = ref.model(**inputs)
    expected = ref.image_processor.post_process_depth_estimation(out, [(130, 200)])[0]["predicted_depth"].numpy()
    got = post_process_depth(out.predicted_depth[0].numpy(), (130, 200))
    assert got.shape == expected.shape == (130, 200)
    assert np.abs(got - expected).max() <= 1e-6 * max(1.0, float(np.abs(expected).max()))
    # the 8-bit image is the same function of the same float32 map
    out["target_size"] = (130, 200)
    reference_image = ref.postprocess(out)["depth"]
    assert np.array_equal(np.asarray(depth_image(expected)), np.asarray(reference_image))


def test_lists_and_batch_sizes(pair, tmp_path):
    ref, pipe = pair
    images = [shapes(96, 64), shapes(96, 64).rotate(90, expand=True), noise(100, 70, seed=3)]
    expected = ref(images)
    for batch_size in (1, 2, 3):
        got = pipe(images, batch_size=batch_size)
        assert isinstance(got, list) and len(got) == 3
        for g, e in zip(got, expected):
            compare(g, e, f"batch_size={batch_size}")
    path = tmp_path / "x.png"
    images[0].save(path)
    for source in (str(path), path.read_bytes(), np.asarray(images[0])):
        compare(pipe(source), expected[0], type(source).__name__)


def test_q8_relative_error(tiny, reference):
    built = tiny.get(MODEL)
    assert built.manifest["dtypes"]["q8"]["passed"]
    ref = reference("depth-estimation", built)
    pipe = edgetf.pipeline("depth-estimation", built.bundle, dtype="q8")
    errors = []
    for image in list(varied_images(*IMAGES).values())[:5]:
        expected = ref(image)["predicted_depth"].numpy()
        got = pipe(image)["predicted_depth"]
        errors.append(np.abs(got - expected).mean() / np.abs(expected - expected.mean()).mean())
    assert max(errors) <= 0.05, errors


def test_too_small_and_bad_images(pair):
    _, pipe = pair
    with pytest.raises(InvalidInputError, match="minimum of 32x32"):
        pipe(noise(8, 8))
    with pytest.raises(InvalidInputError, match="minimum"):
        pipe(Image.new("RGB", (100000, 1)))
    with pytest.raises(InvalidInputError, match="4 channels"):
        pipe(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="does not accept"):
        pipe(shapes(64, 64), threshold=0.1)


def test_demo_and_cli(pair, tmp_path):
    _, pipe = pair
    demo = pipe.demo_input()
    out = pipe(demo)
    assert out["depth"].size == demo.size and out["predicted_depth"].shape == (demo.height, demo.width)
    path = tmp_path / "demo.png"
    demo.save(path)
    assert pipe.cli_inputs([str(path)]) == str(path)
    assert np.array_equal(pipe(pipe.cli_inputs([str(path)]))["predicted_depth"], out["predicted_depth"])
