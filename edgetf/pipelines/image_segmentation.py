"""image-segmentation: same inputs, options and outputs as transformers' ImageSegmentationPipeline
(Mask2Former; SegFormer, semantic only).

The post-processing reproduces Mask2FormerImageProcessor's ``post_process_{panoptic,instance,semantic}
_segmentation`` and SegformerImageProcessor's ``post_process_semantic_segmentation`` in numpy:
Mask2Former's mask logits upsampled to 384x384 (as transformers hard-codes), then to the original
image size, one query or class at a time so memory stays O(image size).

Mask2Former graphs are traced at one height/width (Swin reshapes and the deformable attention's
spatial shapes become constants), so images are always resized to the traced size recorded in the
bundle's manifest (``extra.image_size``) or declared by the graph, and any other size is refused.
With a processor of fixed height/width (the tiny recipes) that is exactly what transformers does;
with one that keeps the aspect ratio (hub checkpoints: shortest edge 384) edgetf resizes to the
traced square instead, so masks of non-square images differ from transformers' there.

Instance segmentation keeps the (query, class) candidates in the order torch.topk(sorted=False)
returns them (edgetf.vision.topk replays it), since that order decides segment ids and overlaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import BundleError, InvalidInputError
from ..numeric import sigmoid, softmax
from ..vision.interpolate import bilinear, nearest
from ..vision.topk import topk_unsorted
from .image_base import ImagePipeline, as_items
from .text_classification import label_map

SUBTASKS = ("panoptic", "instance", "semantic")
MASK_SIZE = (384, 384)  # transformers' Mask2Former post-processing first scales masks to this size


def panoptic(
    class_logits: np.ndarray,
    mask_logits: np.ndarray,
    *,
    threshold: float,
    mask_threshold: float,
    overlap_mask_area_threshold: float,
    target_size: tuple[int, int],
    label_ids_to_fuse: frozenset[int] = frozenset(),
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image's (segmentation map of segment ids, 0 = none; segments) as post_process_panoptic_segmentation."""
    num_labels = class_logits.shape[-1] - 1
    probs = softmax(class_logits.astype(np.float32))
    scores, labels = probs.max(-1), probs.argmax(-1)
    keep = np.nonzero((labels != num_labels) & (scores > np.float32(threshold)))[0]
    if keep.size == 0:
        return np.full(target_size, -1, dtype=np.int32), []
    masks = sigmoid(bilinear(mask_logits[keep], MASK_SIZE))  # (K, 384, 384)
    # Upsample each kept query to the image size, weigh it by its score; keep the running argmax
    # (first index wins ties, as torch.argmax) and each query's thresholded area.
    best = np.full(target_size, -np.inf, dtype=np.float32)
    owner = np.zeros(target_size, dtype=np.int64)
    original_area = np.zeros(keep.size, dtype=np.int64)
    for k in range(keep.size):
        prob = bilinear(masks[k], target_size) * scores[keep[k]]
        original_area[k] = int(np.count_nonzero(prob >= np.float32(mask_threshold)))
        better = prob > best
        best[better] = prob[better]
        owner[better] = k
    area = np.bincount(owner.ravel(), minlength=keep.size)
    segmentation = np.zeros(target_size, dtype=np.int32)
    segments: list[dict[str, Any]] = []
    current, stuff_memory = 0, {}
    for k in range(keep.size):
        label = int(labels[keep[k]])
        exists = area[k] > 0 and original_area[k] > 0
        if exists and not float(np.float32(area[k]) / np.float32(original_area[k])) > overlap_mask_area_threshold:
            exists = False
        if not exists:
            continue
        fuse = label in label_ids_to_fuse
        if label in stuff_memory:
            current = stuff_memory[label]
        else:
            current += 1
        segmentation[owner == k] = current
        score = round(float(scores[keep[k]]), 6)
        segments.append({"id": current, "label_id": label, "was_fused": fuse, "score": score})
        if fuse:
            stuff_memory[label] = current
    return segmentation, segments


def instance(
    class_logits: np.ndarray, mask_logits: np.ndarray, *, threshold: float, target_size: tuple[int, int]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image's (segmentation map of segment ids, -1 = none; segments) as post_process_instance_segmentation."""
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[-1] - 1
    scores = softmax(class_logits.astype(np.float32))[:, :-1]
    top = np.asarray(topk_unsorted(scores.reshape(-1).tolist(), num_queries), dtype=np.int64)
    top_scores, top_labels, top_queries = scores.reshape(-1)[top], top % num_classes, top // num_classes
    segmentation = np.full(target_size, -1, dtype=np.int32)
    segments: list[dict[str, Any]] = []
    current = 0
    for j in range(num_queries):
        logits = bilinear(mask_logits[top_queries[j]], MASK_SIZE)
        binary = logits > 0
        mask_score = (sigmoid(logits) * binary).sum(dtype=np.float32) / (np.float32(binary.sum()) + np.float32(1e-6))
        score = float(top_scores[j] * np.float32(mask_score))
        if score < threshold:
            continue
        resized = nearest(binary, target_size)
        if not resized.any():
            continue
        segmentation[resized] = current
        segments.append({"id": current, "label_id": int(top_labels[j]), "was_fused": False, "score": round(score, 6)})
        current += 1
    return segmentation, segments


def semantic(class_logits: np.ndarray, mask_logits: np.ndarray, *, target_size: tuple[int, int]) -> np.ndarray:
    """One image's class-id map as Mask2Former's post_process_semantic_segmentation."""
    classes = softmax(class_logits.astype(np.float32))[:, :-1]  # (Q, C)
    masks = sigmoid(bilinear(mask_logits, MASK_SIZE))  # (Q, 384, 384)
    per_class = (classes.T @ masks.reshape(masks.shape[0], -1)).reshape(-1, *MASK_SIZE)  # (C, 384, 384)
    return upsampled_argmax(per_class, target_size)


def semantic_from_logits(logits: np.ndarray, *, target_size: tuple[int, int]) -> np.ndarray:
    """One image's class-id map from per-pixel class logits (C, h, w), as SegFormer's (and DPT's)
    post_process_semantic_segmentation: bilinear to the image size, argmax over classes."""
    return upsampled_argmax(logits.astype(np.float32), target_size)


def upsampled_argmax(per_class: np.ndarray, target_size: tuple[int, int]) -> np.ndarray:
    """argmax over axis 0 of ``per_class`` (C, h, w) bilinearly resized to ``target_size``, one class at a time."""
    # Bilinear values are convex combinations of the input values: a class whose maximum is below
    # another class's minimum can win no pixel, and is skipped (margin for float rounding).
    flat = per_class.reshape(per_class.shape[0], -1)
    highs, floor = flat.max(1), float(flat.min(1).max())
    margin = 1e-5 * max(1.0, float(np.abs(flat).max()))
    best = np.full(target_size, -np.inf, dtype=np.float32)
    label = np.zeros(target_size, dtype=np.int64)
    for c in range(per_class.shape[0]):  # running argmax: the first maximum wins, as torch.argmax
        if highs[c] < floor - margin:
            continue
        value = bilinear(per_class[c], target_size)
        better = value > best
        np.copyto(best, value, where=better)
        label[better] = c
    return label


def mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


@dataclass(frozen=True)
class SegmentationHead:
    """What a family's graph outputs and which subtasks its processor post-processes (the first is
    the default, in transformers' order panoptic, instance, semantic)."""

    outputs: tuple[str, ...]
    subtasks: tuple[str, ...]
    semantic: Callable[[tuple[np.ndarray, ...], tuple[int, int]], np.ndarray]


# image_processor_type -> head; transformers picks post-processing by the methods the processor has.
HEADS: dict[str, SegmentationHead] = {
    "Mask2FormerImageProcessor": SegmentationHead(
        ("class_queries_logits", "masks_queries_logits"),
        SUBTASKS,
        lambda values, size: semantic(values[0], values[1], target_size=size),
    ),
    "SegformerImageProcessor": SegmentationHead(
        ("logits",), ("semantic",), lambda values, size: semantic_from_logits(values[0], target_size=size)
    ),
}


class ImageSegmentationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{score, label, mask}, ...]``; ``mask``: an L-mode PIL image (0/255) of the input's size.

    ``subtask``: "panoptic" (default when None), "instance" or "semantic" (``score`` is None) for
    Mask2Former; SegFormer only has "semantic" (its default). ``threshold`` (0.9), ``mask_threshold``
    (0.5), ``overlap_mask_area_threshold`` (0.5) as the reference.
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "subtask": None,
        "threshold": 0.9,
        "mask_threshold": 0.5,
        "overlap_mask_area_threshold": 0.5,
        "batch_size": 1,
    }

    def setup(self) -> None:
        super().setup()
        self.id2label = label_map(self.bundle.config)
        head = HEADS.get(self.processor.type_name)
        if head is None:
            raise BundleError(
                f"image-segmentation supports bundles with {', '.join(sorted(HEADS))}; "
                f"{self.bundle.root} has {self.processor.type_name}"
            )
        self.head = head
        size = self.bundle.extra.get("image_size")
        self._traced: tuple[int, int] | None = None
        if size is not None:
            self._set_traced((int(size["height"]), int(size["width"])))

    def _set_traced(self, size: tuple[int, int]) -> None:
        self._traced = size
        self.processor.force_size(size)

    def traced_size(self) -> tuple[int, int] | None:
        """(height, width) the graph was traced at: from the manifest, else the graph's static input shape."""
        if self._traced is None:
            shape = self.session().inputs["pixel_values"].shape
            if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
                self._set_traced((shape[2], shape[3]))
        return self._traced

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        subtask = opts["subtask"]
        if subtask is not None and subtask not in self.head.subtasks:
            raise InvalidInputError(
                f"subtask={subtask!r} is not supported by this {self.processor.type_name} model; "
                f"use one of {self.head.subtasks} or None ({self.head.subtasks[0]})"
            )
        numbers = {k: opts[k] for k in ("threshold", "mask_threshold", "overlap_mask_area_threshold")}
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"{name} must be a number, got {value!r}")
        items, single = as_items(inputs, self.task)
        results = []
        for values, size in self.raw_outputs(items, batch_size=opts["batch_size"]):
            results.append(self.annotate(values, size, subtask or self.head.subtasks[0], numbers))
        return results[0] if single else results

    def annotate(
        self, values: tuple[np.ndarray, ...], size: tuple[int, int], subtask: str, numbers: dict[str, float]
    ) -> list[dict[str, Any]]:
        """Post-process one image's graph outputs (``self.head.outputs`` without the batch axis)."""
        if subtask == "semantic":
            classes = self.head.semantic(values, size)
            return [
                {"score": None, "label": self.id2label[int(c)], "mask": mask_image(classes == c)}
                for c in np.unique(classes)
            ]
        class_logits, mask_logits = values
        if subtask == "panoptic":
            segmentation, segments = panoptic(class_logits, mask_logits, target_size=size, **numbers)
        else:
            segmentation, segments = instance(
                class_logits, mask_logits, threshold=numbers["threshold"], target_size=size
            )
        return [
            {"score": s["score"], "label": self.id2label[s["label_id"]], "mask": mask_image(segmentation == s["id"])}
            for s in segments
        ]

    def raw_outputs(
        self, items: list[Any], batch_size: int = 1
    ) -> list[tuple[tuple[np.ndarray, ...], tuple[int, int]]]:
        """Per image: (the head's outputs without the batch axis, e.g. (class_queries_logits,
        masks_queries_logits) or (logits,), original (height, width))."""
        self.traced_size()
        out = []
        for chunk in self.chunks(items, batch_size):
            values = self.run_model(chunk.feeds)
            for i, size in enumerate(chunk.sizes):
                out.append((tuple(values[name][i] for name in self.head.outputs), size))
        return out

    def run_model(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; refuses pixel values of any size but the traced one (the graph would be silently wrong)."""
        traced = self.traced_size()
        pixels = feeds["pixel_values"]
        if traced is not None and tuple(pixels.shape[-2:]) != traced:
            raise InvalidInputError(
                f"this graph was traced at {traced[1]}x{traced[0]} (width x height) and is only correct "
                f"at that size; got pixel values of {pixels.shape[-1]}x{pixels.shape[-2]}"
            )
        return self.session().run(feeds, list(self.head.outputs))
