"""Export knowledge for the image tasks: classification (ViT, DeiT, Swin, ConvNeXT), detection (DETR,
YOLOS), segmentation (Mask2Former, SegFormer) and depth (GLPN, DPT, Depth Anything).

Which families serve each task, and how each is exported, is in the family table (edgetf/families.py);
the custom ONNX configs (DETR with its pixel mask, Mask2Former traced at the processor's size, Depth
Anything with a size-following depth head) are in export/onnx_configs.py, named by that table.

Parity checks run the transformers pipeline (and its model, for raw outputs) on generated images
(edgetf.vision.samples.parity_images) next to edgetf; fp32 must match raw outputs within 1e-4 and
agree on every post-processed answer, quantized dtypes must agree often enough (per-task metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Entry
from . import CheckContext, TaskExport, register
from .common import FP32_TOLERANCE, QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict

# -- tiny checkpoints ------------------------------------------------------------------------------


def build_tiny(entry: Entry, out_dir: Path, seed: int) -> Path:
    """The generic builder, then ``weight_scale``: {parameter-name prefix: factor} multiplies those
    weights, e.g. a sharper class head so random Mask2Former queries pass the score thresholds."""
    import torch
    import transformers

    from ..tiny import build_generic

    recipe = dict(entry.tiny)
    scales = dict(recipe.pop("weight_scale", {}))
    build_generic(recipe, out_dir, seed=seed)
    if scales:
        model = getattr(transformers, recipe["architecture"]).from_pretrained(str(out_dir)).eval()
        named = dict(model.named_parameters())
        for prefix, factor in scales.items():
            hits = [name for name in named if name.startswith(prefix + ".")]
            if not hits:
                raise ValueError(f"tiny recipe of {entry.name}: weight_scale prefix {prefix!r} matches no parameter")
            with torch.no_grad():
                for name in hits:
                    named[name].mul_(float(factor))
        model.save_pretrained(str(out_dir))
    return Path(out_dir)


# -- parity checks ---------------------------------------------------------------------------------


def _images() -> list[tuple[str, Any]]:
    from edgetf.vision.samples import parity_images

    return parity_images()


def _model_outputs(pipe: Any, image: Any) -> dict[str, np.ndarray]:
    """The reference model's raw outputs on the reference processor's pixels."""
    import torch

    inputs = pipe.image_processor(images=[image], return_tensors="pt")
    with torch.no_grad():
        out = pipe.model(**inputs)
    return {k: v.detach().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def check_image_classification(ctx: CheckContext) -> dict[str, Any]:
    images = _images()

    def run_reference() -> list[list[dict[str, Any]]]:
        pipe = transformers_pipeline(ctx, "image-classification")
        return [pipe(image, top_k=pipe.model.config.num_labels) for _, image in images]

    expected = reference(ctx, "image-classification", run_reference)
    pipe = edgetf_pipeline(ctx, "image-classification")
    max_diff, agree = 0.0, 0
    for (_, image), ref in zip(images, expected):
        got = pipe(image, top_k=len(ref))
        ref_scores = {d["label"]: d["score"] for d in ref}
        max_diff = max(max_diff, max(abs(ref_scores[d["label"]] - d["score"]) for d in got))
        agree += ref[0]["label"] == got[0]["label"]
    n = len(images)
    return verdict(
        ctx,
        metric="label score",
        max_diff=max_diff,
        agreement=agree / n,
        n=n,
        extra={"top1": agree / n},
        quant_max_diff=QUANT_MAX_DIFF,
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two (n, 4) corner-format box arrays."""
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1, y1 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)


def check_object_detection(ctx: CheckContext) -> dict[str, Any]:
    from edgetf.pipelines.object_detection import center_to_corners

    images = _images()

    def run_reference() -> dict[str, Any]:
        pipe = transformers_pipeline(ctx, "object-detection")
        raw = [_model_outputs(pipe, image) for _, image in images]
        detections = [pipe(image, threshold=-1.0) for _, image in images]  # every query
        return {"raw": raw, "detections": detections}

    expected = reference(ctx, "object-detection", run_reference)
    pipe = edgetf_pipeline(ctx, "object-detection")
    got_raw = pipe.raw_outputs([image for _, image in images])
    max_diff, same, total, ious = 0.0, 0, 0, []
    for (_, image), ref_raw, (raw, _size), ref_det in zip(images, expected["raw"], got_raw, expected["detections"]):
        for key in ("logits", "pred_boxes"):
            max_diff = max(max_diff, float(np.abs(ref_raw[key][0] - raw[key]).max()))
        det = pipe(image, threshold=-1.0)
        total += len(ref_det)
        for r, g in zip(ref_det, det):
            same += r["label"] == g["label"] and (ctx.dtype != "fp32" or r["box"] == g["box"])
        ious.extend(box_iou(center_to_corners(ref_raw["pred_boxes"][0]), center_to_corners(raw["pred_boxes"])))
    extra = {
        "label_agreement": same / max(total, 1),
        "mean_box_iou": float(np.mean(ious)),
        "min_box_iou": float(np.min(ious)),
    }
    return verdict(ctx, metric="logits/boxes", max_diff=max_diff, agreement=same / max(total, 1), n=total, extra=extra)


# Per graph output: the class axis of one image's array (agreement of quantized outputs is argmax agreement).
_CLASS_AXIS = {"class_queries_logits": -1, "logits": 0}


def check_image_segmentation(ctx: CheckContext) -> dict[str, Any]:
    images = _images()
    options = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.5}
    pipe = edgetf_pipeline(ctx, "image-segmentation")
    subtask = pipe.head.subtasks[0]
    if subtask == "semantic":
        options = {}

    def run_reference() -> dict[str, Any]:
        ref = transformers_pipeline(ctx, "image-segmentation")
        raw = [_model_outputs(ref, image) for _, image in images]
        segments = [segments_of(ref(image, subtask=subtask, **options)) for _, image in images]
        return {"raw": raw, "segments": segments}

    expected = reference(ctx, "image-segmentation", run_reference)
    got_raw = pipe.raw_outputs([image for _, image in images])
    max_diff, same_class, classified, mask_ious, same_output = 0.0, 0, 0, [], 0
    for (_, image), ref_raw, (values, _size), ref_seg in zip(images, expected["raw"], got_raw, expected["segments"]):
        for name, got in zip(pipe.head.outputs, values):
            ref_value = ref_raw[name][0]
            max_diff = max(max_diff, float(np.abs(ref_value - got).max()))
            if name in _CLASS_AXIS:
                axis = _CLASS_AXIS[name]
                agree = ref_value.argmax(axis) == got.argmax(axis)
                same_class, classified = same_class + int(agree.sum()), classified + agree.size
        if "masks_queries_logits" in pipe.head.outputs:
            masks = values[pipe.head.outputs.index("masks_queries_logits")]
            for r, g in zip(ref_raw["masks_queries_logits"][0] > 0, masks > 0):
                union = np.logical_or(r, g).sum()
                mask_ious.append(float(np.logical_and(r, g).sum() / union) if union else 1.0)
        got_seg = segments_of(pipe(image, subtask=subtask, **options))
        if "masks_queries_logits" not in pipe.head.outputs:  # per-pixel heads: one mask per label
            mask_ious.extend(label_mask_ious(ref_seg, got_seg))
        if subtask == "semantic" and "logits" in pipe.head.outputs:  # near-tied pixels may flip in fp32
            logits = values[pipe.head.outputs.index("logits")]
            label2id = {label: i for i, label in pipe.id2label.items()}
            same_output += semantic_mismatches(ref_seg, got_seg, logits, label2id, FP32_TOLERANCE) == 0
        else:
            same_output += _same_segments(got_seg, ref_seg)
    n = len(images)
    extra = {"class_agreement": same_class / classified, f"{subtask}_identical": same_output / n}
    extra["mean_mask_iou"] = float(np.mean(mask_ious)) if mask_ious else 1.0
    agreement = same_output / n if ctx.dtype == "fp32" else same_class / classified
    metric = "class/mask logits" if "masks_queries_logits" in pipe.head.outputs else "logits"
    return verdict(ctx, metric=metric, max_diff=max_diff, agreement=agreement, n=n, extra=extra)


def segments_of(output: list[dict[str, Any]]) -> list[tuple[str, float | None, np.ndarray]]:
    return [
        (d["label"], None if d["score"] is None else round(d["score"], 4), np.asarray(d["mask"]) > 0) for d in output
    ]


def label_mask_ious(expected: list[tuple[str, Any, np.ndarray]], got: list[tuple[str, Any, np.ndarray]]) -> list[float]:
    """IoU of each label's mask between two outputs (``segments_of`` form); a label in one only scores 0."""
    masks = [{label: mask for label, _, mask in segments} for segments in (expected, got)]
    ious = []
    for label in sorted(set(masks[0]) | set(masks[1])):
        if label not in masks[0] or label not in masks[1]:
            ious.append(0.0)
            continue
        union = np.logical_or(masks[0][label], masks[1][label]).sum()
        ious.append(float(np.logical_and(masks[0][label], masks[1][label]).sum() / union) if union else 1.0)
    return ious


def _same_segments(a: list[tuple[str, Any, np.ndarray]], b: list[tuple[str, Any, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and np.array_equal(x[2], y[2]) for x, y in zip(a, b))


def semantic_mismatches(
    expected: list[tuple[str, Any, np.ndarray]],
    got: list[tuple[str, Any, np.ndarray]],
    logits: np.ndarray,
    label2id: dict[str, int],
    tol: float,
) -> int:
    """Pixels whose class differs between two semantic outputs (``segments_of`` form) and whose two classes'
    upsampled logits (from edgetf's ``logits`` (C, h, w)) are more than ``tol`` apart: real disagreements,
    not ties that a one-ulp difference in the graph's output decides either way."""
    from edgetf.vision.interpolate import bilinear

    maps = []
    for segments in (expected, got):
        classes = np.full(segments[0][2].shape, -1, dtype=np.int64) if segments else None
        for label, _, mask in segments:
            classes[mask] = label2id[label]  # type: ignore[index]
        maps.append(classes)
    if maps[0] is None or maps[1] is None:
        return 0 if maps[0] is maps[1] else 1
    differ = np.argwhere(maps[0] != maps[1])
    if differ.size == 0:
        return 0
    upsampled = bilinear(logits.astype(np.float32), maps[0].shape)
    gaps = [abs(float(upsampled[maps[0][y, x], y, x] - upsampled[maps[1][y, x], y, x])) for y, x in differ]
    return sum(gap > tol for gap in gaps)


def check_depth_estimation(ctx: CheckContext) -> dict[str, Any]:
    images = _images()

    def run_reference() -> list[np.ndarray]:
        pipe = transformers_pipeline(ctx, "depth-estimation")
        return [pipe(image)["predicted_depth"].numpy() for _, image in images]

    expected = reference(ctx, "depth-estimation", run_reference)
    pipe = edgetf_pipeline(ctx, "depth-estimation")
    max_diff, max_abs_diff, rel_errors = 0.0, 0.0, []
    for (_, image), ref in zip(images, expected):
        got = pipe(image)["predicted_depth"]
        error = float(np.abs(ref - got).max())
        max_abs_diff = max(max_abs_diff, error)
        # float32 error grows with the values: depth maps in the thousands (DPT/MiDaS disparity) are
        # compared relative to their largest value, maps within [-1, 1] absolutely.
        max_diff = max(max_diff, error / max(1.0, float(np.abs(ref).max())))
        spread = float(np.abs(ref - ref.mean()).mean())  # error relative to the map's variation, not its offset
        rel_errors.append(float(np.abs(ref - got).mean() / max(spread, 1e-12)))
    tolerance = float(ctx.entry.parity.get("max_relative_error", 0.05))
    agreement = sum(e <= tolerance for e in rel_errors) / len(rel_errors)
    extra = {
        "max_abs_diff": max_abs_diff,
        "mean_relative_error": float(np.mean(rel_errors)),
        "max_relative_error": float(max(rel_errors)),
    }
    return verdict(ctx, metric="predicted_depth", max_diff=max_diff, agreement=agreement, n=len(images), extra=extra)


register(
    TaskExport("image-classification", "image-classification", check_image_classification, build_tiny=build_tiny),
    TaskExport("object-detection", "object-detection", check_object_detection, build_tiny=build_tiny),
    TaskExport("image-segmentation", "image-segmentation", check_image_segmentation, build_tiny=build_tiny),
    TaskExport("depth-estimation", "depth-estimation", check_depth_estimation, build_tiny=build_tiny),
)
