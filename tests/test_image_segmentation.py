"""image-segmentation parity with transformers' pipeline: Mask2Former (Swin, ResNet backbones), tiny random weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import varied_images
from transformers.image_utils import load_image as hf_load_image

import edgetf
from edgetf.errors import InferenceError, InvalidInputError
from edgetf.pipelines.image_segmentation import instance, panoptic, semantic
from edgetf.vision.samples import gradient, noise, shapes

MODELS = ["mask2former-swin-tiny", "mask2former-resnet"]


IMAGES = (
    "shapes 320x240",
    "gradient 96x96",
    "noise 123x77",
    "tall 40x150",
    "tiny 8x8",
    "L",
    "RGBA",
    "CMYK",
)


def as_comparable(output):
    return [
        (
            d["label"],
            None if d["score"] is None else round(d["score"], 4),
            d["mask"].mode,
            d["mask"].size,
            np.asarray(d["mask"]).tobytes(),
        )
        for d in output
    ]


# fp32 onnxruntime and PyTorch differ by ~1e-5 in the logits; a pixel whose two best classes (or whose
# probability and mask_threshold) are that close can go either way. The post-processing itself is exact
# (test_post_processing_alone_matches_the_image_processor); end to end, this share of pixels may differ.
MAX_MASK_MISMATCH = 5e-5
MISMATCHES: list[float] = []


def assert_same(got, expected, what=""):
    assert len(got) == len(expected), (what, [d["label"] for d in got], [d["label"] for d in expected])
    for g, e in zip(got, expected):
        assert g.keys() == e.keys() == {"score", "label", "mask"}
        assert g["label"] == e["label"], what
        assert (g["score"] is None) == (e["score"] is None)
        if e["score"] is not None:
            assert abs(g["score"] - e["score"]) <= 1e-4, what
        assert g["mask"].mode == "L" and g["mask"].size == e["mask"].size
        mismatch = float(np.mean(np.asarray(g["mask"]) != np.asarray(e["mask"])))
        MISMATCHES.append(mismatch)
        assert mismatch <= MAX_MASK_MISMATCH, (what, mismatch)


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    return reference("image-segmentation", built), edgetf.pipeline("image-segmentation", built.bundle, dtype="fp32")


def reference_raw(ref, image):
    inputs = ref.image_processor(images=[hf_load_image(image)], return_tensors="pt")
    with torch.no_grad():
        out = ref.model(**inputs)
    return out.class_queries_logits, out.masks_queries_logits


def test_fp32_class_and_mask_logits_within_1e4(pair):
    ref, pipe = pair
    worst = 0.0
    for image in varied_images(*IMAGES).values():
        cls, masks = reference_raw(ref, image)
        (((got_cls, got_masks), size),) = pipe.raw_outputs([image])
        assert size == (image.height, image.width) and got_masks.shape == masks.shape[1:]
        worst = max(
            worst, float(np.abs(got_cls - cls[0].numpy()).max()), float(np.abs(got_masks - masks[0].numpy()).max())
        )
    assert worst <= 1e-4, worst


OPTIONS = [
    {"threshold": 0.5},
    {"subtask": "panoptic", "threshold": 0.4, "mask_threshold": 0.3, "overlap_mask_area_threshold": 0.8},
    {"subtask": "instance", "threshold": 0.2},
    {"subtask": "instance", "threshold": 0.4},
    {"subtask": "semantic"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_post_processed_segments_identical(pair, options):
    ref, pipe = pair
    segments = 0
    names = ("shapes 320x240", "noise 123x77", "tall 40x150")
    for name, image in ((n, im) for n, im in varied_images(*IMAGES).items() if n in names):
        expected, got = ref(image, **options), pipe(image, **options)
        assert_same(got, expected, name)
        segments += len(expected)
    assert segments > 0  # thresholds chosen so the tiny model's outputs are not empty


def test_every_mode_and_size_with_default_options(pair):
    ref, pipe = pair
    for name, image in varied_images(*IMAGES).items():
        assert_same(pipe(image), ref(image), name)


def test_large_image_2000x1500(pair):
    ref, pipe = pair
    image = shapes(2000, 1500)
    options = {"threshold": 0.5} if "swin" in pipe.bundle.root.name else {"subtask": "semantic"}
    assert_same(pipe(image, **options), ref(image, **options), str(options))


def same_info(got, expected):
    """Same segments; scores (rounded to 6 decimals by both) may differ by one unit in the last place,
    since numpy and PyTorch sum a mask's probabilities in different orders."""
    assert [{**d, "score": 0} for d in got] == [{**d, "score": 0} for d in expected]
    assert all(abs(g["score"] - e["score"]) <= 1.5e-6 for g, e in zip(got, expected))
    return True


def test_post_processing_alone_matches_the_image_processor(pair):
    """The numpy post-processing on the reference model's own outputs gives the processor's exact maps."""
    ref, _ = pair
    processor = ref.image_processor
    for image in (shapes(320, 240), noise(37, 61, seed=3)):
        cls, masks = reference_raw(ref, image)
        outputs = type("Out", (), {"class_queries_logits": cls, "masks_queries_logits": masks})()
        size = (image.height, image.width)
        c, m = cls[0].numpy(), masks[0].numpy()
        for threshold in (0.3, 0.6):
            expected = processor.post_process_panoptic_segmentation(
                outputs, threshold=threshold, mask_threshold=0.5, overlap_mask_area_threshold=0.6, target_sizes=[size]
            )[0]
            seg, info = panoptic(
                c, m, threshold=threshold, mask_threshold=0.5, overlap_mask_area_threshold=0.6, target_size=size
            )
            assert same_info(info, expected["segments_info"]) and np.array_equal(seg, expected["segmentation"].numpy())
            post = processor.post_process_instance_segmentation
            expected = post(outputs, threshold=threshold, target_sizes=[size])[0]
            seg, info = instance(c, m, threshold=threshold, target_size=size)
            assert same_info(info, expected["segments_info"]) and np.array_equal(seg, expected["segmentation"].numpy())
        expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[size])[0]
        assert np.array_equal(semantic(c, m, target_size=size), expected.numpy())


def test_graph_runs_only_at_its_traced_size(pair, tmp_path):
    _, pipe = pair
    traced = pipe.bundle.extra["image_size"]
    size = (traced["height"], traced["width"])
    assert pipe.traced_size() == size and pipe.bundle.extra["static_image_size"] is True
    shape = pipe.session().inputs["pixel_values"].shape
    assert shape[2:] == list(size) and not isinstance(shape[0], int)  # static height/width, dynamic batch
    wrong = np.zeros((1, 3, size[0] + 32, size[1]), np.float32)
    with pytest.raises(InvalidInputError, match="traced at"):
        pipe.run_model({"pixel_values": wrong})
    with pytest.raises(InferenceError):  # and onnxruntime itself refuses it
        pipe.session().run({"pixel_values": wrong})
    # without the manifest (a plain exported folder) the size comes from the graph's static shape
    plain = tmp_path / "plain"
    shutil.copytree(pipe.bundle.root, plain)
    (plain / "edgetf.json").unlink()
    config = json.loads((plain / "preprocessor_config.json").read_text())
    config["size"] = {"shortest_edge": 48, "longest_edge": 200}  # a processor that would keep the aspect ratio
    (plain / "preprocessor_config.json").write_text(json.dumps(config))
    other = edgetf.pipeline("image-segmentation", plain)
    image = shapes(300, 100)
    assert other.traced_size() == size
    assert_same(other(image, threshold=0.5), pipe(image, threshold=0.5))


def test_batches(pair):
    ref, pipe = pair
    images = [shapes(120, 90), noise(64, 64, seed=4), gradient(50, 130)]
    expected = [ref(im, threshold=0.5) for im in images]
    for batch_size in (1, 3):
        for got, exp in zip(pipe(images, threshold=0.5, batch_size=batch_size), expected):
            assert_same(got, exp)


def test_q8_masks_and_classes_agree(tiny, reference):
    ious, same, total = [], 0, 0
    for name in MODELS:
        built = tiny.get(name)
        assert built.manifest["dtypes"]["q8"]["passed"], name
        ref = reference("image-segmentation", built)
        pipe = edgetf.pipeline("image-segmentation", built.bundle, dtype="q8")
        for image in (shapes(320, 240), gradient(96, 96), noise(123, 77, seed=1), shapes(40, 150)):
            cls, masks = reference_raw(ref, image)
            (((got_cls, got_masks), _),) = pipe.raw_outputs([image])
            same += int((cls[0].numpy().argmax(-1) == got_cls.argmax(-1)).sum())
            total += got_cls.shape[0]
            for r, g in zip(masks[0].numpy() > 0, got_masks > 0):
                union = np.logical_or(r, g).sum()
                ious.append(np.logical_and(r, g).sum() / union if union else 1.0)
    assert np.mean(ious) >= 0.9 and same / total >= 0.85, (np.mean(ious), same / total)


def test_bad_inputs_and_options(pair):
    _, pipe = pair
    with pytest.raises(InvalidInputError, match="subtask"):
        pipe(shapes(40, 40), subtask="amodal")
    with pytest.raises(InvalidInputError, match="mask_threshold"):
        pipe(shapes(40, 40), mask_threshold=None)
    with pytest.raises(InvalidInputError, match="4 channels"):
        pipe(np.zeros((10, 10, 4), np.uint8))


def test_demo_and_cli(pair, tmp_path):
    _, pipe = pair
    demo = pipe.demo_input()
    out = pipe(demo, threshold=0.3)
    assert out and all(d["mask"].size == demo.size and d["mask"].mode == "L" for d in out)
    path = tmp_path / "demo.png"
    demo.save(path)
    assert pipe.cli_inputs([str(path)]) == str(path)
    assert as_comparable(pipe(str(path), threshold=0.3)) == as_comparable(out)


def test_traced_size_follows_the_processor(tiny, tmp_path):
    from export.onnx_configs import traced_size
    from export.plan import make_plan

    built = tiny.get("mask2former-resnet")
    assert traced_size(built.checkpoint) == (96, 64)  # the processor's {height, width}
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(built.checkpoint, checkpoint)
    config = json.loads((checkpoint / "preprocessor_config.json").read_text())
    config["size"] = {"shortest_edge": 40, "longest_edge": 100}  # hub-style: square at the shortest edge, rounded up
    (checkpoint / "preprocessor_config.json").write_text(json.dumps(config))
    assert traced_size(checkpoint) == (64, 64)
    plan = make_plan(checkpoint, "image-segmentation")
    assert (plan.export_kwargs["height"], plan.export_kwargs["width"]) == (64, 64)
    assert "model" in plan.export_kwargs["custom_onnx_configs"]
    assert plan.manifest_extra == {"image_size": {"height": 64, "width": 64}, "static_image_size": True}
