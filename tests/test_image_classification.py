"""image-classification parity with transformers' pipeline: ViT and ConvNeXT tiny random-weight bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import close, varied_images
from PIL import Image
from transformers.image_utils import load_image as hf_load_image

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.vision.samples import demo_image, gradient, noise, shapes

MODELS = ["vit-base", "convnext-tiny"]


IMAGES = (
    "shapes 320x240",
    "gradient 96x96",
    "noise 123x77",
    "tall 40x150",
    "tiny 8x8",
    "large 2000x1500",
    "L",
    "LA",
    "P",
    "RGBA",
    "CMYK",
    "I;16",
)


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    return reference("image-classification", built), edgetf.pipeline("image-classification", built.bundle, dtype="fp32")


def test_fp32_logits_and_scores_match_on_varied_images(pair):
    ref, pipe = pair
    images = varied_images(*IMAGES)
    worst_logit, worst_score = 0.0, 0.0
    for name, image in images.items():
        inputs = ref.image_processor(images=hf_load_image(image), return_tensors="pt")
        with torch.no_grad():
            expected_logits = ref.model(**inputs).logits[0].numpy()
        got_logits = pipe.logits([image])[0]
        worst_logit = max(worst_logit, float(np.abs(expected_logits - got_logits).max()))
        expected, got = ref(image, top_k=100), pipe(image, top_k=100)
        assert [d["label"] for d in got] == [d["label"] for d in expected], name
        worst_score = max(worst_score, max(abs(e["score"] - g["score"]) for e, g in zip(expected, got)))
    assert worst_logit <= 1e-4 and worst_score <= 1e-4


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"top_k": 1}, {"top_k": 3}, {"top_k": 0}, {"top_k": 99}, {"top_k": None}, {"function_to_apply": "sigmoid"}]
    + [{"function_to_apply": "none", "top_k": 4}, {"function_to_apply": "SOFTMAX"}],
)
def test_options_give_the_reference_output(pair, kwargs):
    ref, pipe = pair
    image = shapes(200, 150)
    expected, got = ref(image, **kwargs), pipe(image, **kwargs)
    assert close(got, expected), (kwargs, got, expected)


def test_batches_and_batch_size_give_the_reference_output(pair, tmp_path):
    ref, pipe = pair
    images = [shapes(100, 80), noise(64, 64), gradient(30, 90)]
    path = tmp_path / "a.png"
    images[0].save(path)
    expected = ref(images, top_k=3)
    assert close(pipe(images, top_k=3), expected)
    assert close(pipe(images, top_k=3, batch_size=2), expected)
    assert close(pipe(tuple(images), top_k=3, batch_size=3), expected)
    # one image through every input kind: path, bytes, numpy array, PIL
    single = ref(str(path), top_k=3)
    for source in (str(path), path, path.read_bytes(), np.asarray(images[0]), images[0]):
        assert close(pipe(source, top_k=3), single)
    assert pipe([], top_k=3) == []


def test_construction_defaults_and_call_overrides(tiny, reference):
    built = tiny.get("vit-base")
    ref = reference("image-classification", built)
    pipe = edgetf.pipeline("image-classification", built.bundle, dtype="fp32", top_k=2)
    image = noise(50, 40, seed=9)
    assert close(pipe(image), ref(image, top_k=2))
    assert close(pipe(image, top_k=4), ref(image, top_k=4))


def test_q8_agrees_on_top1(tiny, reference):
    agree, total = 0, 0
    for name in MODELS:
        built = tiny.get(name)
        assert built.manifest["dtypes"]["q8"]["passed"], name
        ref = reference("image-classification", built)
        pipe = edgetf.pipeline("image-classification", built.bundle, dtype="q8")
        for image in varied_images(*IMAGES).values():
            agree += ref(image, top_k=1)[0]["label"] == pipe(image, top_k=1)[0]["label"]
            total += 1
    assert agree / total >= 0.9, agree / total


def test_bad_inputs_and_options(pair):
    _, pipe = pair
    with pytest.raises(InvalidInputError, match="4 channels"):
        pipe(np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="image 1"):
        pipe([shapes(20, 20), b"not an image"])
    with pytest.raises(InvalidInputError, match="top_k"):
        pipe(shapes(20, 20), top_k=-1)
    with pytest.raises(InvalidInputError, match="function_to_apply"):
        pipe(shapes(20, 20), function_to_apply="tanh")
    with pytest.raises(InvalidInputError, match="batch_size"):
        pipe([shapes(20, 20)], batch_size=0)
    with pytest.raises(InvalidInputError, match="does not accept"):
        pipe(shapes(20, 20), threshold=0.5)


def test_demo_and_cli_inputs(pair, tmp_path):
    _, pipe = pair
    demo = pipe.demo_input()
    assert isinstance(demo, Image.Image) and demo.size == demo_image().size
    assert len(pipe(demo)) == min(5, len(pipe.id2label))
    path = tmp_path / "x.png"
    demo.save(path)
    assert pipe.cli_inputs([str(path)]) == str(path)
    assert pipe.cli_inputs([str(path), str(path)]) == [str(path), str(path)]
    assert close(pipe(pipe.cli_inputs([str(path)])), pipe(demo))
