"""object-detection: same inputs, options and outputs as transformers' ObjectDetectionPipeline (DETR family)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from ..numeric import softmax
from .image_base import ImagePipeline, as_items
from .text_classification import label_map


def center_to_corners(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), float32."""
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    half = np.float32(0.5)
    return np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=-1)


def post_process_detection(
    logits: np.ndarray, pred_boxes: np.ndarray, threshold: float, target_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (scores, label ids, boxes x0 y0 x1 y1) above ``threshold``, as DETR's
    ``post_process_object_detection``: softmax, drop the last (no-object) class, boxes scaled to
    ``target_size`` (height, width) in float32."""
    probs = softmax(logits.astype(np.float32))[..., :-1]
    scores, labels = probs.max(-1), probs.argmax(-1)
    boxes = center_to_corners(pred_boxes.astype(np.float32))
    if target_size is not None:
        height, width = np.float32(target_size[0]), np.float32(target_size[1])
        boxes = boxes * np.array([width, height, width, height], dtype=np.float32)
    keep = scores > threshold
    return scores[keep], labels[keep], boxes[keep]


def box_dict(box: np.ndarray) -> dict[str, int]:
    """Corners as ints, truncated toward zero like ``torch.Tensor.int()``."""
    xmin, ymin, xmax, ymax = (int(v) for v in box.astype(np.int32))
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


class ObjectDetectionPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{score, label, box: {xmin, ymin, xmax, ymax}}, ...]`` in query order.

    Boxes are integer pixels of the original image. ``threshold`` (default 0.5) keeps detections whose
    best class probability is above it. With ``batch_size`` > 1 the images of a batch are padded to a
    common size and the model gets the pixel mask, as the image processor does for a batch.
    """

    options_accepted: ClassVar[dict[str, Any]] = {"threshold": 0.5, "batch_size": 1}

    def setup(self) -> None:
        super().setup()
        self.id2label = label_map(self.bundle.config)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        threshold = opts["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InvalidInputError(f"threshold must be a number, got {threshold!r}")
        items, single = as_items(inputs, self.task)
        results = []
        for raw, size in self.raw_outputs(items, batch_size=opts["batch_size"]):
            scores, labels, boxes = post_process_detection(raw["logits"], raw["pred_boxes"], float(threshold), size)
            results.append(
                [
                    {"score": float(s), "label": self.id2label[int(lab)], "box": box_dict(b)}
                    for s, lab, b in zip(scores, labels, boxes)
                ]
            )
        return results[0] if single else results

    def raw_outputs(self, items: list[Any], batch_size: int = 1) -> list[tuple[dict[str, np.ndarray], tuple[int, int]]]:
        """Per image: ({"logits", "pred_boxes"} without the batch axis, original (height, width))."""
        session = self.session()
        out = []
        for chunk in self.chunks(items, batch_size):
            values = session.run(chunk.feeds, ["logits", "pred_boxes"])
            for i, size in enumerate(chunk.sizes):
                out.append(({k: v[i] for k, v in values.items()}, size))
        return out
