"""Vision families beyond the catalog: checkpoints built here (not catalog entries), exported through
the CLI exactly as a user runs it (``python -m export CKPT --task T --out OUT --dtype fp32 q8``), and
compared with transformers' pipelines on images of several sizes and modes.

Families: classification ViT, DeiT (and ...WithTeacher), Swin, ConvNeXT; detection DETR, YOLOS;
segmentation SegFormer (semantic), Mask2Former; depth GLPN, DPT (fixed size and centre-padded),
Depth Anything (aspect ratio kept, sizes vary per image). Random weights, and the checkpoints carry
export/tiny.py's random-weights marker: the export judges q8 on output closeness to the fp32 graph
(export/gates.py), not on argmax agreement between near-tied random labels. Heads are sharpened with
``weight_scale`` where near-ties would make the reference comparisons below a coin toss.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import varied_images

import edgetf
from edgetf.errors import InvalidInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = {"0": "cat", "1": "dog", "2": "car", "3": "tree", "4": "boat", "5": "house"}
DETECTION_LABELS = {"0": "N/A", "1": "person", "2": "car", "3": "dog", "4": "bicycle"}
IMAGENET_DEFAULT = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
VIT_SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
DPT_NECK = {"neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16}

# the Mix Transformer encoder SegFormer and GLPN share, two small stages
MIT_ENCODER = {
    "num_encoder_blocks": 2,
    "depths": [1, 1],
    "sr_ratios": [2, 1],
    "hidden_sizes": [16, 32],
    "num_attention_heads": [1, 2],
    "patch_sizes": [7, 3],
    "strides": [4, 2],
    "mlp_ratios": [2, 2],
}

# depth maps of ~10 at this init: q8 within 5% mean relative error
DPT_CONFIG = {
    "model_type": "dpt",
    **VIT_SMALL,
    "num_hidden_layers": 4,
    "image_size": 32,
    "patch_size": 8,
    "backbone_out_indices": [0, 1, 2, 3],
    **DPT_NECK,
    "initializer_range": 0.14,
}

# name -> (task, tiny recipe as export/tasks/vision.py build_tiny reads it)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "deit": (
        "image-classification",
        {
            "architecture": "DeiTForImageClassification",
            "config": {"model_type": "deit", **VIT_SMALL, "image_size": 32, "patch_size": 8, "id2label": LABELS},
            "preprocessor": {
                "class": "DeiTImageProcessor",
                "size": {"height": 40, "width": 40},
                "crop_size": {"height": 32, "width": 32},
            },
        },
    ),
    "deit-teacher": (
        "image-classification",
        {
            "architecture": "DeiTForImageClassificationWithTeacher",
            "config": {"model_type": "deit", **VIT_SMALL, "image_size": 32, "patch_size": 8, "id2label": LABELS},
            "preprocessor": {
                "class": "DeiTImageProcessor",
                "size": {"height": 36, "width": 44},
                "crop_size": {"height": 32, "width": 32},
                "resample": 2,
            },
        },
    ),
    "swin": (
        "image-classification",
        {
            "architecture": "SwinForImageClassification",
            "config": {
                "model_type": "swin",
                "image_size": 32,
                "patch_size": 2,
                "embed_dim": 16,
                "depths": [1, 1],
                "num_heads": [1, 2],
                "window_size": 4,
                "id2label": LABELS,
            },
            "weight_scale": {"classifier": 20.0},
            "preprocessor": {"class": "ViTImageProcessor", "size": {"height": 32, "width": 32}, "resample": 3},
        },
    ),
    "vit": (
        "image-classification",
        {
            "architecture": "ViTForImageClassification",
            "config": {
                "model_type": "vit",
                "hidden_size": 48,
                "intermediate_size": 96,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 48,
                "patch_size": 16,
                "initializer_range": 0.2,
                "id2label": LABELS,
            },
            "preprocessor": {
                "class": "ViTImageProcessor",
                "size": {"height": 48, "width": 48},
                "resample": 3,
                **IMAGENET_DEFAULT,
            },
        },
    ),
    "convnext": (
        "image-classification",
        {
            "architecture": "ConvNextForImageClassification",
            "config": {
                "model_type": "convnext",
                "hidden_sizes": [16, 24],
                "depths": [1, 2],
                "num_stages": 2,
                "initializer_range": 0.2,
                "id2label": LABELS,
            },
            "weight_scale": {"classifier": 8.0},
            "seed": 1,  # seed 0 gives a near-tie (top-2 gap 0.04) on the gradient image that q8 flips
            "preprocessor": {"class": "ConvNextImageProcessor", "size": {"shortest_edge": 48}, "crop_pct": 0.9},
        },
    ),
    "yolos": (
        "object-detection",
        {
            "architecture": "YolosForObjectDetection",
            "config": {
                "model_type": "yolos",
                **VIT_SMALL,
                "image_size": [64, 96],
                "patch_size": 8,
                "num_detection_tokens": 10,
                "initializer_range": 0.2,
                "id2label": DETECTION_LABELS,
            },
            "weight_scale": {"class_labels_classifier": 2.0},
            "preprocessor": {"class": "YolosImageProcessor", "size": {"shortest_edge": 64, "longest_edge": 112}},
        },
    ),
    "detr": (
        "object-detection",
        {
            "architecture": "DetrForObjectDetection",
            "config": {
                "model_type": "detr",
                "d_model": 32,
                "encoder_layers": 2,
                "decoder_layers": 1,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 48,
                "decoder_ffn_dim": 48,
                "num_queries": 8,
                "init_std": 0.3,
                "use_timm_backbone": False,
                "use_pretrained_backbone": False,
                "backbone_config": {
                    "model_type": "resnet",
                    "layer_type": "bottleneck",
                    "hidden_sizes": [16, 32],
                    "depths": [1, 1],
                    "embedding_size": 16,
                    "out_features": ["stage2"],
                },
                "id2label": DETECTION_LABELS,
            },
            "preprocessor": {"class": "DetrImageProcessor", "size": {"shortest_edge": 48, "longest_edge": 80}},
        },
    ),
    "segformer": (
        "image-segmentation",
        {
            "architecture": "SegformerForSemanticSegmentation",
            "config": {
                "model_type": "segformer",
                **MIT_ENCODER,
                "decoder_hidden_size": 32,
                "initializer_range": 0.2,
                "id2label": LABELS,
            },
            "preprocessor": {"class": "SegformerImageProcessor", "size": {"height": 64, "width": 64}},
        },
    ),
    "mask2former": (
        "image-segmentation",
        {
            "architecture": "Mask2FormerForUniversalSegmentation",
            "config": {
                "model_type": "mask2former",
                "num_labels": 12,
                "feature_size": 32,
                "mask_feature_size": 32,
                "hidden_dim": 32,
                "encoder_feedforward_dim": 64,
                "dim_feedforward": 64,
                "encoder_layers": 1,
                "decoder_layers": 2,
                "num_attention_heads": 4,
                "num_queries": 8,
                "init_std": 0.1,
                "backbone_config": {
                    "model_type": "resnet",
                    "embedding_size": 16,
                    "hidden_sizes": [16, 16, 32, 32],
                    "depths": [1, 1, 1, 1],
                    "layer_type": "basic",
                    "out_features": ["stage1", "stage2", "stage3", "stage4"],
                },
            },
            "weight_scale": {"class_predictor": 8.0},
            "preprocessor": {
                "class": "Mask2FormerImageProcessor",
                "size": {"height": 64, "width": 96},
                "size_divisor": 32,
                "ignore_index": 255,
            },
        },
    ),
    "glpn": (
        "depth-estimation",
        {
            "architecture": "GLPNForDepthEstimation",
            "config": {
                "model_type": "glpn",
                **MIT_ENCODER,
                "decoder_hidden_size": 16,
                "initializer_range": 0.1,
            },
            "preprocessor": {"class": "GLPNImageProcessor", "size_divisor": 16, "resample": 3},
        },
    ),
    # DPT with its ViT backbone only runs on square patch grids (in transformers too): 40x40 rounded to 32x32.
    "dpt": (
        "depth-estimation",
        {
            "architecture": "DPTForDepthEstimation",
            "config": DPT_CONFIG,
            "preprocessor": {
                "class": "DPTImageProcessor",
                "size": {"height": 40, "width": 40},
                "ensure_multiple_of": 16,
            },
        },
    ),
    "dpt-pad": (
        "depth-estimation",
        {
            "architecture": "DPTForDepthEstimation",
            "config": DPT_CONFIG,
            "preprocessor": {
                "class": "DPTImageProcessor",
                "size": {"height": 37, "width": 45},
                "do_pad": True,
                "size_divisor": 16,
                "resample": 2,
            },
        },
    ),
    # as depth-anything/Depth-Anything-V2-Small-hf's processor (keep_aspect_ratio, multiple of 14), at 56 not 518
    "depth-anything": (
        "depth-estimation",
        {
            "architecture": "DepthAnythingForDepthEstimation",
            "config": {
                "model_type": "depth_anything",
                "backbone_config": {
                    "model_type": "dinov2",
                    "hidden_size": 32,
                    "num_hidden_layers": 4,
                    "num_attention_heads": 2,
                    "mlp_ratio": 2,
                    "image_size": 56,
                    "patch_size": 14,
                    "out_indices": [1, 2, 3, 4],
                    "reshape_hidden_states": False,
                },
                **DPT_NECK,
                "head_hidden_size": 8,
                "reassemble_hidden_size": 32,
                "patch_size": 14,
                "initializer_range": 0.2,
            },
            "preprocessor": {
                "class": "DPTImageProcessor",
                "size": {"height": 56, "width": 56},
                "keep_aspect_ratio": True,
                "ensure_multiple_of": 14,
                "resample": 3,
                **IMAGENET_DEFAULT,
            },
        },
    ),
}
IMAGES = ("shapes 320x240", "noise 123x77", "tall 40x150", "L", "RGBA")


class Exported:
    """Checkpoints built and exported once per module (kept between runs under EDGETF_TEST_MODELS)."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, tuple[Path, Path, dict[str, Any]]] = {}

    def get(self, name: str) -> tuple[Path, Path, dict[str, Any]]:
        if name not in self.done:
            from export.__main__ import main as export_main
            from export.catalog import Entry
            from export.tasks.vision import build_tiny
            from export.tiny import mark_random

            task, recipe = FAMILIES[name]
            recipe = dict(recipe)
            seed = recipe.pop("seed", 0)
            checkpoint, bundle = self.root / "checkpoints" / name, self.root / "bundles" / name
            stamp = self.root / f"{name}.fingerprint"
            fingerprint = _fingerprint(FAMILIES[name])
            if not (stamp.is_file() and stamp.read_text() == fingerprint):
                build_tiny(Entry(name=name, task=task, source=name, tiny=recipe), checkpoint, seed)
                mark_random(checkpoint, seed)
                argv = [str(checkpoint), "--task", task, "--out", str(bundle), "--dtype", "fp32", "q8"]
                assert export_main(argv) == 0, name
                stamp.write_text(fingerprint)
            manifest = json.loads((bundle / "edgetf.json").read_text())
            self.done[name] = (checkpoint, bundle, manifest)
        return self.done[name]


def _fingerprint(recipe: Any) -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(repr(recipe).encode())
    for folder in ("export", "edgetf"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def exported(tiny) -> Exported:
    root = tiny.root / "vision-families"
    root.mkdir(parents=True, exist_ok=True)
    return Exported(root)


@pytest.fixture(scope="module")
def pipelines(exported):
    made: dict[str, Any] = {}

    def get(name: str) -> tuple[Any, Any, dict[str, Any]]:
        if name not in made:
            import transformers

            task = FAMILIES[name][0]
            checkpoint, bundle, manifest = exported.get(name)
            ref = transformers.pipeline(task, model=str(checkpoint), device="cpu")
            made[name] = (ref, edgetf.pipeline(task, bundle, dtype="fp32"), manifest)
        return made[name]

    return get


def names(task: str) -> list[str]:
    return [name for name, (t, _) in FAMILIES.items() if t == task]


# bundle name -> the family row (edgetf/families.py) the export planned it with
FAMILY_ROWS = {"deit-teacher": "vit", "deit": "vit", "swin": "vit", "convnext": "vit", "dpt-pad": "dpt"}
FAMILY_ROWS["depth-anything"] = "depth_anything"


def check_manifest(name: str, manifest: dict[str, Any]) -> None:
    """Planned from the family table; fp32 passed the export's own parity check; q8 verified on output
    closeness (the random-weights gate) and passed."""
    plan = manifest["extra"]["export"]
    assert plan["family"] == FAMILY_ROWS.get(name, name) and plan["in_family_table"], plan
    assert plan["optimum_task"] == FAMILIES[name][0], plan  # optimum's task of the same name, e.g. SegFormer's
    dtypes = manifest["dtypes"]
    assert dtypes["fp32"]["passed"] and dtypes["fp32"]["parity"]["max_diff"] <= 1e-4, dtypes["fp32"]["parity"]
    q8 = dtypes["q8"]["parity"]
    assert dtypes["q8"]["passed"] and q8["gate"] == "random" and q8["feeds_compared"] >= 1, q8


@pytest.mark.parametrize("name", names("image-classification"))
def test_classification_family_matches_transformers(pipelines, name):
    ref, pipe, manifest = pipelines(name)
    check_manifest(name, manifest)
    for image_name, image in varied_images(*IMAGES).items():
        expected = ref(image, top_k=len(LABELS))
        got = pipe(image, top_k=len(LABELS))
        assert {d["label"] for d in got} == set(LABELS.values())
        ref_scores = {d["label"]: d["score"] for d in expected}
        diff = max(abs(ref_scores[d["label"]] - d["score"]) for d in got)
        assert diff <= 1e-5, (name, image_name, diff)
        assert all(a["score"] >= b["score"] for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("name", names("object-detection"))
def test_detection_family_matches_transformers(pipelines, name):
    ref, pipe, manifest = pipelines(name)
    check_manifest(name, manifest)
    for image_name, image in varied_images(*IMAGES).items():
        expected = ref(image, threshold=-1.0)  # every query, in query order
        got = pipe(image, threshold=-1.0)
        assert len(got) == len(expected) > 0
        for e, g in zip(expected, got):
            assert abs(e["score"] - g["score"]) <= 1e-5, (name, image_name)
            assert e["label"] == g["label"], (name, image_name)
            # int() truncation of a box corner a float ulp away from an integer may differ by one pixel
            assert all(abs(e["box"][k] - g["box"][k]) <= 1 for k in e["box"]), (name, image_name, e, g)


def test_segformer_semantic_masks_match_transformers(pipelines):
    from export.tasks.vision import segments_of, semantic_mismatches

    ref, pipe, manifest = pipelines("segformer")
    check_manifest("segformer", manifest)
    label2id = {label: i for i, label in pipe.id2label.items()}
    identical = 0
    for image_name, image in varied_images(*IMAGES).items():
        expected, got = ref(image), pipe(image)  # subtask None: semantic, the only one SegFormer has
        assert all(d["score"] is None and d["mask"].size == image.size for d in got)
        ((logits,), _size) = pipe.raw_outputs([image])[0]
        mismatches = semantic_mismatches(segments_of(expected), segments_of(got), logits, label2id, 1e-5)
        assert mismatches == 0, (image_name, mismatches)
        identical += [d["label"] for d in expected] == [d["label"] for d in got]
    assert identical >= len(IMAGES) - 1  # a label can only go missing through a tie
    with pytest.raises(InvalidInputError, match="subtask='panoptic' is not supported"):
        pipe(varied_images("L")["L"], subtask="panoptic")


def test_mask2former_outside_the_catalog_matches_transformers(pipelines):
    ref, pipe, manifest = pipelines("mask2former")
    check_manifest("mask2former", manifest)
    assert manifest["extra"]["image_size"] == {"height": 64, "width": 96}
    options = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.5}
    for image_name, image in varied_images(*IMAGES).items():
        expected, got = ref(image, subtask="panoptic", **options), pipe(image, subtask="panoptic", **options)
        assert [d["label"] for d in got] == [d["label"] for d in expected], image_name
        for e, g in zip(expected, got):
            assert abs(e["score"] - g["score"]) <= 1e-4
            assert np.array_equal(np.asarray(e["mask"]), np.asarray(g["mask"])), image_name


@pytest.mark.parametrize("name", names("depth-estimation"))
def test_depth_family_matches_transformers(pipelines, name):
    ref, pipe, manifest = pipelines(name)
    check_manifest(name, manifest)
    for image_name, image in varied_images(*IMAGES).items():
        expected, got = ref(image), pipe(image)
        ref_depth = expected["predicted_depth"].numpy()
        assert got["predicted_depth"].shape == ref_depth.shape == (image.height, image.width)
        scale = max(1.0, float(np.abs(ref_depth).max()))
        diff = float(np.abs(got["predicted_depth"] - ref_depth).max()) / scale
        assert diff <= 1e-5, (name, image_name, diff)
        levels = np.abs(np.asarray(got["depth"], np.int16) - np.asarray(expected["depth"], np.int16))
        assert levels.max() <= 1, (name, image_name)


def test_depth_anything_graph_follows_the_processed_size(pipelines):
    """Depth Anything keeps the aspect ratio: the exported graph must not be fixed at the traced size."""
    _ref, pipe, _manifest = pipelines("depth-anything")
    shapes = {raw.shape for raw, _size in pipe.raw_outputs(list(varied_images(*IMAGES).values()))}
    assert len(shapes) >= 3, shapes  # 56x70, 56x42, 196x56 ... all at 2x the patch grid's size


def test_depth_anything_row_names_its_onnx_config():
    from edgetf.families import family_for
    from export.onnx_configs import ONNX_CONFIGS

    row = family_for({"model_type": "depth_anything"}, "depth-estimation")
    assert row.known and row.onnx_config == "depth-anything" and row.onnx_config in ONNX_CONFIGS
    assert family_for({"model_type": "beit"}).name == "vit" and family_for({"model_type": "beit"}).onnx_config is None


def test_unsupported_family_is_one_line_naming_the_supported_ones(tmp_path, capsys):
    from export.__main__ import main as export_main

    checkpoint = tmp_path / "zoedepth"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "zoedepth"}))
    (checkpoint / "model.safetensors").write_bytes(b"")
    out = tmp_path / "bundle"
    assert export_main([str(checkpoint), "--task", "depth-estimation", "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().out.splitlines() if "unsupported:" in line]
    assert len(lines) == 1 and "cannot export a 'zoedepth' checkpoint for 'depth-estimation'" in lines[0], lines
    assert lines[0].endswith("depth-estimation exports from: glpn, dpt, depth_anything"), lines
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
