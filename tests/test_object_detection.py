"""object-detection parity with transformers' pipeline: DETR (transformers ResNet backbone), tiny random weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import varied_images
from PIL import Image
from transformers.image_utils import load_image as hf_load_image

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.object_detection import center_to_corners, post_process_detection
from edgetf.vision.samples import gradient, noise, shapes

MODEL = "detr-resnet-50"


IMAGES = (
    "shapes 320x240",
    "gradient 96x96",
    "noise 123x77",
    "tall 40x150",
    "tiny 8x8",
    "large 2000x1500",
    "L",
    "P",
    "RGBA",
    "CMYK",
    "I;16",
)


def same_detections(got, expected, tol=1e-4):
    """Same labels and integer boxes in the same order; scores within tol."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.keys() == e.keys() == {"score", "label", "box"}
        assert g["label"] == e["label"] and g["box"] == e["box"], (g, e)
        assert isinstance(g["score"], float) and math.isclose(g["score"], e["score"], abs_tol=tol)
        assert all(isinstance(v, int) for v in g["box"].values())
    return True


@pytest.fixture(scope="module")
def pair(tiny, reference):
    built = tiny.get(MODEL)
    return reference("object-detection", built), edgetf.pipeline("object-detection", built.bundle, dtype="fp32")


def reference_raw(ref, images):
    inputs = ref.image_processor(images=[hf_load_image(im) for im in images], return_tensors="pt")
    with torch.no_grad():
        out = ref.model(**inputs)
    return out.logits.numpy(), out.pred_boxes.numpy()


def test_fp32_logits_and_boxes_within_1e4(pair):
    ref, pipe = pair
    worst = 0.0
    for image in varied_images(*IMAGES).values():
        logits, boxes = reference_raw(ref, [image])
        ((raw, size),) = pipe.raw_outputs([image])
        assert size == (image.height, image.width)
        worst = max(
            worst, float(np.abs(raw["logits"] - logits[0]).max()), float(np.abs(raw["pred_boxes"] - boxes[0]).max())
        )
    assert worst <= 1e-4, worst


@pytest.mark.parametrize("threshold", [None, 0.3, -1.0, 0.99])
def test_post_processed_detections_identical(pair, threshold):
    ref, pipe = pair
    kwargs = {} if threshold is None else {"threshold": threshold}
    found = 0
    for name, image in varied_images(*IMAGES).items():
        expected, got = ref(image, **kwargs), pipe(image, **kwargs)
        assert same_detections(got, expected), name
        found += len(expected)
    if threshold is not None and threshold < 0:
        assert found == 12 * len(varied_images(*IMAGES))  # every query
    if threshold == 0.3:
        assert found > 0  # the tiny model's scores do cross this threshold


def test_post_processing_alone_matches_transformers_on_the_reference_outputs(pair):
    ref, _ = pair
    image = shapes(333, 222)
    logits, boxes = reference_raw(ref, [image])
    outputs = type("Out", (), {"logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(boxes)})()
    for threshold in (0.0, 0.3, 0.5):
        expected = ref.image_processor.post_process_object_detection(outputs, threshold, [(222, 333)])[0]
        scores, labels, corners = post_process_detection(logits[0], boxes[0], threshold, (222, 333))
        assert np.array_equal(labels, expected["labels"].numpy())
        assert np.array_equal(corners, expected["boxes"].numpy())
        assert np.abs(scores - expected["scores"].numpy()).max(initial=0) <= 1e-6
    assert np.array_equal(center_to_corners(np.array([[0.5, 0.5, 1.0, 0.5]], np.float32)), [[0, 0.25, 1, 0.75]])


def test_padded_batch_matches_the_processor_batch(pair):
    ref, pipe = pair
    images = [shapes(320, 240), noise(50, 140, seed=5), gradient(96, 96)]
    inputs = ref.image_processor(images=images, return_tensors="pt")
    assert inputs["pixel_mask"].min() == 0  # the batch really is padded
    with torch.no_grad():
        out = ref.model(**inputs)
    sizes = [(im.height, im.width) for im in images]
    expected = ref.image_processor.post_process_object_detection(out, 0.3, sizes)
    got = pipe(images, threshold=0.3, batch_size=3)
    for e, g in zip(expected, got):
        labels = [ref.model.config.id2label[int(i)] for i in e["labels"]]
        assert [d["label"] for d in g] == labels
        assert [list(d["box"].values()) for d in g] == e["boxes"].int().tolist()
        assert np.allclose([d["score"] for d in g], e["scores"].numpy(), atol=1e-4)
    # batch_size=1 pads nothing: one by one equals the reference pipeline
    assert all(same_detections(g, ref(im, threshold=0.3)) for g, im in zip(pipe(images, threshold=0.3), images))


def test_q8_boxes_and_labels_agree(tiny, reference):
    built = tiny.get(MODEL)
    assert built.manifest["dtypes"]["q8"]["passed"]
    ref = reference("object-detection", built)
    pipe = edgetf.pipeline("object-detection", built.bundle, dtype="q8")
    ious, same = [], 0
    for image in varied_images(*IMAGES).values():
        logits, boxes = reference_raw(ref, [image])
        ((raw, _),) = pipe.raw_outputs([image])
        a, b = center_to_corners(boxes[0]), center_to_corners(raw["pred_boxes"])
        inter = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None).prod(1)
        union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
        ious.extend(inter / union)
        same += int((logits[0][:, :-1].argmax(-1) == raw["logits"][:, :-1].argmax(-1)).sum())
    assert np.mean(ious) >= 0.85 and same / len(ious) >= 0.85, (np.mean(ious), same / len(ious))


def test_bad_inputs_and_options(pair):
    _, pipe = pair
    with pytest.raises(InvalidInputError, match="threshold"):
        pipe(shapes(40, 40), threshold="high")
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        pipe(np.full((20, 20, 3), 2.5, np.float32))
    with pytest.raises(InvalidInputError, match="too small or too elongated"):
        pipe(Image.new("RGB", (100000, 1)))
    with pytest.raises(InvalidInputError, match="empty"):
        pipe(Image.new("RGB", (0, 5)))


def test_demo_and_cli(pair, tmp_path):
    _, pipe = pair
    demo = pipe.demo_input()
    out = pipe(demo, threshold=0.0)
    assert len(out) == 12 and all(set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"} for d in out)
    path = tmp_path / "demo.jpg"
    demo.save(path)
    assert pipe.cli_inputs([str(path)]) == str(path)
    assert isinstance(pipe(pipe.cli_inputs([str(path), str(path)])), list)
