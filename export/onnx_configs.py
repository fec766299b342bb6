"""Custom ONNX configs, named by the family table's ``onnx_config`` column (edgetf/families.py).

* ``detr-with-pixel-mask``: DETR with its ``pixel_mask`` input (optimum's config drops it), so batches
  of padded images run as the image processor prepares them.
* ``mask2former``: optimum has no ONNX config for Mask2Former; this one declares its inputs and outputs.
  Its graph is only correct at the traced height/width (Swin window reshapes and the deformable
  attention's spatial shapes become constants): families with ``static_image_size`` are traced at the
  image processor's size (:func:`traced_size`) and that size is recorded in the manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def detr_with_pixel_mask(model_config: Any, task: str) -> Any:
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


def mask2former(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.model_configs import MaskFormerOnnxConfig

    class Mask2FormerOnnxConfig(MaskFormerOnnxConfig):
        """Mask2Former: pixel_values with a dynamic batch only (height/width are baked in at tracing);
        outputs class_queries_logits (batch, queries, labels + 1) and masks_queries_logits
        (batch, queries, height / 4, width / 4)."""

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {"pixel_values": {0: "batch_size"}}

    return Mask2FormerOnnxConfig(model_config, task=task)


ONNX_CONFIGS: dict[str, Callable[[Any, str], Any]] = {
    "detr-with-pixel-mask": detr_with_pixel_mask,
    "mask2former": mask2former,
}


def traced_size(checkpoint: Path) -> tuple[int, int]:
    """(height, width) a fixed-size graph is traced at: the image processor's output size for a square
    image (its {height, width}, else its shortest edge rounded up to size_divisor)."""
    from edgetf.vision.processors import make_processor

    checkpoint = Path(checkpoint)
    path = checkpoint / "preprocessor_config.json"
    preprocessor = json.loads(path.read_text()) if path.is_file() else {}
    config = json.loads((checkpoint / "config.json").read_text())
    processor = make_processor(preprocessor, config)
    if getattr(processor, "size", None) and "height" in processor.size:  # type: ignore[attr-defined]
        return processor.resized_size(1, 1)
    edge = int(processor.size["shortest_edge"])  # type: ignore[attr-defined]
    divisor = int(getattr(processor, "size_divisor", 0) or 1)
    side = int(math.ceil(edge / divisor) * divisor)
    return side, side
