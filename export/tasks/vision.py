"""Export knowledge for the image tasks: ViT/ConvNeXT classification, DETR detection,
Mask2Former segmentation and GLPN depth.

The custom ONNX configs (DETR with its pixel mask, Mask2Former traced at the processor's size) are in
export/onnx_configs.py, named by the family table.

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
from .common import QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict

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


def check_image_segmentation(ctx: CheckContext) -> dict[str, Any]:
    images = _images()
    options = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.5}

    def run_reference() -> dict[str, Any]:
        pipe = transformers_pipeline(ctx, "image-segmentation")
        raw = [_model_outputs(pipe, image) for _, image in images]
        segments = [_segments(pipe(image, subtask="panoptic", **options)) for _, image in images]
        return {"raw": raw, "segments": segments}

    expected = reference(ctx, "image-segmentation", run_reference)
    pipe = edgetf_pipeline(ctx, "image-segmentation")
    got_raw = pipe.raw_outputs([image for _, image in images])
    max_diff, same_class, queries, mask_ious, same_output = 0.0, 0, 0, [], 0
    for (_, image), ref_raw, ((cls, masks), _size), ref_seg in zip(
        images, expected["raw"], got_raw, expected["segments"]
    ):
        ref_cls, ref_masks = ref_raw["class_queries_logits"][0], ref_raw["masks_queries_logits"][0]
        max_diff = max(max_diff, float(np.abs(ref_cls - cls).max()), float(np.abs(ref_masks - masks).max()))
        same_class += int((ref_cls.argmax(-1) == cls.argmax(-1)).sum())
        queries += cls.shape[0]
        for r, g in zip(ref_masks > 0, masks > 0):
            union = np.logical_or(r, g).sum()
            mask_ious.append(float(np.logical_and(r, g).sum() / union) if union else 1.0)
        same_output += _segments(pipe(image, subtask="panoptic", **options)) == ref_seg
    n = len(images)
    extra = {
        "class_agreement": same_class / queries,
        "mean_mask_iou": float(np.mean(mask_ious)),
        "panoptic_identical": same_output / n,
    }
    agreement = same_output / n if ctx.dtype == "fp32" else same_class / queries
    return verdict(ctx, metric="class/mask logits", max_diff=max_diff, agreement=agreement, n=n, extra=extra)


def _segments(output: list[dict[str, Any]]) -> list[tuple[str, float, bytes]]:
    return [(d["label"], round(d["score"], 4), np.asarray(d["mask"]).tobytes()) for d in output]


def check_depth_estimation(ctx: CheckContext) -> dict[str, Any]:
    images = _images()

    def run_reference() -> list[np.ndarray]:
        pipe = transformers_pipeline(ctx, "depth-estimation")
        return [pipe(image)["predicted_depth"].numpy() for _, image in images]

    expected = reference(ctx, "depth-estimation", run_reference)
    pipe = edgetf_pipeline(ctx, "depth-estimation")
    max_diff, rel_errors = 0.0, []
    for (_, image), ref in zip(images, expected):
        got = pipe(image)["predicted_depth"]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
        spread = float(np.abs(ref - ref.mean()).mean())  # error relative to the map's variation, not its offset
        rel_errors.append(float(np.abs(ref - got).mean() / max(spread, 1e-12)))
    tolerance = float(ctx.entry.parity.get("max_relative_error", 0.05))
    agreement = sum(e <= tolerance for e in rel_errors) / len(rel_errors)
    extra = {"mean_relative_error": float(np.mean(rel_errors)), "max_relative_error": float(max(rel_errors))}
    return verdict(ctx, metric="predicted_depth", max_diff=max_diff, agreement=agreement, n=len(images), extra=extra)


register(
    TaskExport("image-classification", "image-classification", check_image_classification, build_tiny=build_tiny),
    TaskExport("object-detection", "object-detection", check_object_detection, build_tiny=build_tiny),
    TaskExport("image-segmentation", "image-segmentation", check_image_segmentation, build_tiny=build_tiny),
    TaskExport("depth-estimation", "depth-estimation", check_depth_estimation, build_tiny=build_tiny),
)
