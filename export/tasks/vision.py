"""Export knowledge for the image tasks: classification (ViT, DeiT, Swin, ConvNeXT), detection (DETR,
YOLOS), segmentation (Mask2Former, SegFormer) and depth (GLPN, DPT, Depth Anything).

Per-family facts live in ``VISION_FAMILIES`` (keyed by config.json ``model_type``):

* DETR is exported with its ``pixel_mask`` input (optimum's config drops it), so batches of padded
  images run as the image processor prepares them.
* Mask2Former has no ONNX config in optimum: ``Mask2FormerOnnxConfig`` below declares its inputs and
  outputs. Its graph is only correct at the traced height/width (Swin window reshapes and the
  deformable attention's spatial shapes become constants), so it is traced at the image
  processor's size with static height/width, and that size is recorded in the manifest
  (``extra.image_size``) for the runtime to resize to.
* Depth Anything is not registered in optimum-onnx 0.1.0: exported with DPT's ONNX config, and its
  head's upsampling size (``int(patch_height * patch_size)``, a constant once traced) is computed
  from the input's shape during export so the graph works at every size its processor makes.

Parity checks run the transformers pipeline (and its model, for raw outputs) on generated images
(edgetf.vision.samples.parity_images) next to edgetf; fp32 must match raw outputs within 1e-4 and
agree on every post-processed answer, quantized dtypes must agree often enough (per-task metric).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Entry
from . import CheckContext, TaskExport, register
from .common import FP32_TOLERANCE, QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict

# -- ONNX configs --------------------------------------------------------------------------------


def _detr_onnx_config(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.model_configs import DetrOnnxConfig

    class DetrWithMaskOnnxConfig(DetrOnnxConfig):
        """DETR with ``pixel_mask`` (1 = real pixel, 0 = padding), dynamic batch and size."""

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {
                "pixel_values": {0: "batch_size", 2: "height", 3: "width"},
                "pixel_mask": {0: "batch_size", 1: "height", 2: "width"},
            }

    return DetrWithMaskOnnxConfig(model_config, task=task)


def _mask2former_onnx_config(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.model_configs import MaskFormerOnnxConfig

    class Mask2FormerOnnxConfig(MaskFormerOnnxConfig):
        """Mask2Former: pixel_values with a dynamic batch only (height/width are baked in at tracing);
        outputs class_queries_logits (batch, queries, labels + 1) and masks_queries_logits
        (batch, queries, height / 4, width / 4)."""

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {"pixel_values": {0: "batch_size"}}

    return Mask2FormerOnnxConfig(model_config, task="image-segmentation")


def _depth_anything_onnx_config(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.model_configs import DptOnnxConfig

    class DepthAnythingOnnxConfig(DptOnnxConfig):
        """DPT's config (pixel_values -> predicted_depth, dynamic batch/height/width) with the depth
        head patched while tracing so its output size follows the input (see ``_dynamic_depth_head``)."""

        def patch_model_for_export(self, model: Any, model_kwargs: dict[str, Any] | None = None) -> Any:
            patcher = super().patch_model_for_export(model, model_kwargs=model_kwargs)
            return _stacked(patcher, _dynamic_depth_head(model))

    return DepthAnythingOnnxConfig(model_config, task=task)


@contextlib.contextmanager
def _stacked(*managers: Any) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


@contextlib.contextmanager
def _dynamic_depth_head(model: Any) -> Iterator[None]:
    """Depth Anything's head upsamples to ``(int(patch_height * patch_size), ...)``: ``int()`` turns the traced
    size into a constant, so the exported graph only works at the export's dummy size. While exporting,
    the head's forward computes the same size from the traced shape instead (same values in eager mode)."""
    import torch

    head = model.head
    original = head.forward

    def forward(hidden_states: list[Any], patch_height: Any, patch_width: Any) -> Any:
        hidden = hidden_states[head.head_in_index]
        depth = head.conv1(hidden)
        depth = torch.nn.functional.interpolate(
            depth, (patch_height * head.patch_size, patch_width * head.patch_size), mode="bilinear", align_corners=True
        )
        depth = head.activation1(head.conv2(depth))
        depth = head.activation2(head.conv3(depth)) * head.max_depth
        return depth.squeeze(dim=1)

    head.forward = forward
    try:
        yield
    finally:
        head.forward = original


# -- the family table (moves into export/families.py rows once that lands on main) --------------
# model_type -> what export needs beyond optimum's defaults, measured with optimum-onnx 0.1.0,
# transformers 4.57, torch 2.13:
#   tasks          edgetf tasks this family exports for (optimum task of the same name)
#   onnx_config    factory(model_config, task) for custom_onnx_configs={"model": ...}; None: optimum's own
#   static_size    the graph is only right at the traced height/width (traced at the processor's size)
# q8 quantizes MatMul only for every family here (TaskExport's default): convolutions stay float.
#   processor      image_processor_type edgetf reads (edgetf/vision/processors.py)
VISION_FAMILIES: dict[str, dict[str, Any]] = {
    "vit": {"tasks": ("image-classification",), "processor": "ViTImageProcessor"},
    # DeiTForImageClassification and ...WithTeacher (logits = mean of the two heads) export alike.
    "deit": {"tasks": ("image-classification",), "processor": "DeiTImageProcessor"},
    # Swin's window reshapes are traced at config.image_size (optimum's dummy size): the processor's size.
    "swin": {"tasks": ("image-classification",), "processor": "ViTImageProcessor"},
    "convnext": {"tasks": ("image-classification",), "processor": "ConvNextImageProcessor"},
    "detr": {"tasks": ("object-detection",), "onnx_config": _detr_onnx_config, "processor": "DetrImageProcessor"},
    # YOLOS: no pixel mask; position embeddings are interpolated in-graph, any size works.
    "yolos": {"tasks": ("object-detection",), "processor": "YolosImageProcessor"},
    # SegFormer: optimum's "image-segmentation" (= its "semantic-segmentation") exports the logits (N, C, H/4, W/4).
    "segformer": {"tasks": ("image-segmentation",), "processor": "SegformerImageProcessor"},
    "mask2former": {
        "tasks": ("image-segmentation",),
        "onnx_config": _mask2former_onnx_config,
        "static_size": True,
        "processor": "Mask2FormerImageProcessor",
    },
    "glpn": {"tasks": ("depth-estimation",), "processor": "GLPNImageProcessor"},
    # DPT (ViT backbone, not hybrid) only runs on square patch grids, in transformers too.
    "dpt": {"tasks": ("depth-estimation",), "processor": "DPTImageProcessor"},
    "depth_anything": {
        "tasks": ("depth-estimation",),
        "onnx_config": _depth_anything_onnx_config,
        "processor": "DPTImageProcessor",
    },
}


class UnsupportedFamily(ValueError):
    """optimum cannot export this model_type for this task and edgetf has no ONNX config for it."""


def families_for(task: str) -> list[str]:
    return sorted(name for name, row in VISION_FAMILIES.items() if task in row["tasks"])


def family(task: str, model_type: str) -> dict[str, Any]:
    """The table row of ``model_type`` for ``task``; {} for a family optimum exports by itself; raises
    UnsupportedFamily (one line naming the supported families) when neither knows it."""
    row = VISION_FAMILIES.get(model_type)
    if row is not None and task in row["tasks"]:
        return row
    if task in _optimum_tasks(model_type):
        return {}
    raise UnsupportedFamily(
        f"cannot export model_type {model_type!r} for {task}: optimum-onnx has no ONNX config for it; "
        f"supported for {task}: {', '.join(families_for(task))}"
    )


def _optimum_tasks(model_type: str) -> list[str]:
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    try:
        return list(TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers"))
    except KeyError:
        return []


def _model_config(checkpoint: Path) -> Any:
    import transformers

    return transformers.AutoConfig.from_pretrained(str(checkpoint))


def _preprocessor(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def traced_size(entry: Entry, checkpoint: Path) -> tuple[int, int]:
    """(height, width) a fixed-size graph is traced at: the catalog's export height/width, else the
    image processor's output size for a square image (size rounded up to size_divisor)."""
    if "height" in entry.export and "width" in entry.export:
        return int(entry.export["height"]), int(entry.export["width"])
    from edgetf.vision.processors import make_processor

    processor = make_processor(_preprocessor(checkpoint), _model_config(checkpoint).to_dict())
    if getattr(processor, "size", None) and "height" in processor.size:  # type: ignore[attr-defined]
        return processor.resized_size(1, 1)
    edge = int(processor.size["shortest_edge"])  # type: ignore[attr-defined]
    divisor = int(getattr(processor, "size_divisor", 0) or 1)
    side = int(math.ceil(edge / divisor) * divisor)
    return side, side


def vision_export_kwargs(task: str) -> Any:
    """The ``export_kwargs`` hook of ``task``: the family row's custom ONNX config and traced size."""

    def kwargs(entry: Entry, checkpoint: Path) -> dict[str, Any]:
        config = _model_config(checkpoint)
        row = family(task, config.model_type)
        out: dict[str, Any] = {}
        if row.get("onnx_config") is not None:
            out["custom_onnx_configs"] = {"model": row["onnx_config"](config, task)}
            out["library_name"] = "transformers"
        if row.get("static_size"):
            out["height"], out["width"] = traced_size(entry, checkpoint)
        return out

    return kwargs


def segmentation_manifest_extra(entry: Entry, checkpoint: Path) -> dict[str, Any]:
    if not family("image-segmentation", _model_config(checkpoint).model_type).get("static_size"):
        return {}
    height, width = traced_size(entry, checkpoint)
    return {"image_size": {"height": height, "width": width}, "static_image_size": True}


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
        segments = [_segments(ref(image, subtask=subtask, **options)) for _, image in images]
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
        got_seg = _segments(pipe(image, subtask=subtask, **options))
        if subtask == "semantic" and "logits" in pipe.head.outputs:  # near-tied pixels may flip in fp32
            logits = values[pipe.head.outputs.index("logits")]
            label2id = {label: i for i, label in pipe.id2label.items()}
            same_output += semantic_mismatches(ref_seg, got_seg, logits, label2id, FP32_TOLERANCE) == 0
        else:
            same_output += _same_segments(got_seg, ref_seg)
    n = len(images)
    extra = {"class_agreement": same_class / classified, f"{subtask}_identical": same_output / n}
    if mask_ious:
        extra["mean_mask_iou"] = float(np.mean(mask_ious))
    agreement = same_output / n if ctx.dtype == "fp32" else same_class / classified
    metric = "class/mask logits" if mask_ious else "logits"
    return verdict(ctx, metric=metric, max_diff=max_diff, agreement=agreement, n=n, extra=extra)


def _segments(output: list[dict[str, Any]]) -> list[tuple[str, float | None, np.ndarray]]:
    return [
        (d["label"], None if d["score"] is None else round(d["score"], 4), np.asarray(d["mask"]) > 0) for d in output
    ]


def _same_segments(a: list[tuple[str, Any, np.ndarray]], b: list[tuple[str, Any, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and np.array_equal(x[2], y[2]) for x, y in zip(a, b))


def semantic_mismatches(
    expected: list[tuple[str, Any, np.ndarray]],
    got: list[tuple[str, Any, np.ndarray]],
    logits: np.ndarray,
    label2id: dict[str, int],
    tol: float,
) -> int:
    """Pixels whose class differs between two semantic outputs (``_segments`` form) and whose two classes'
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
    *(
        TaskExport(
            task,
            task,
            check,
            export_kwargs=vision_export_kwargs(task),
            build_tiny=build_tiny,
            manifest_extra=segmentation_manifest_extra if task == "image-segmentation" else None,
        )
        for task, check in (
            ("image-classification", check_image_classification),
            ("object-detection", check_object_detection),
            ("image-segmentation", check_image_segmentation),
            ("depth-estimation", check_depth_estimation),
        )
    )
)
