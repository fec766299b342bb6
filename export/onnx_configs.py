"""Custom ONNX configs, named by the family table's ``onnx_config`` column (edgetf/families.py).

* ``detr-with-pixel-mask``: DETR with its ``pixel_mask`` input (optimum's config drops it), so batches
  of padded images run as the image processor prepares them.
* ``mask2former``: optimum has no ONNX config for Mask2Former; this one declares its inputs and outputs.
  Its graph is only correct at the traced height/width (Swin window reshapes and the deformable
  attention's spatial shapes become constants): families with ``static_image_size`` are traced at the
  image processor's size (:func:`traced_size`) and that size is recorded in the manifest.
* ``depth-anything``: Depth Anything is not registered in optimum-onnx 0.1.0. It is exported with DPT's
  config (pixel_values -> predicted_depth, dynamic batch/height/width), its depth head patched while
  tracing: the head upsamples to ``int(patch_height * patch_size)``, and ``int()`` would make the traced
  size a constant, so the graph would only work at the export's dummy size. Patched, the size follows
  the input's shape (same values in eager mode), and one graph serves every size the processor makes
  (it keeps the aspect ratio).
* ``whisper-cross-attentions``: optimum's Whisper config whose decoders also output
  ``cross_attentions.{layer}`` (batch, heads, decoder positions, encoder positions), exported with
  ``output_attentions`` as transformers.js does, for word timestamps (families with ``word_alignment``).
  Encoder-decoder configs come as optimum's three behaviours (:func:`custom_configs`); the merged
  decoder keeps the outputs in both branches, and the decode loop never asks for them.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
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


def depth_anything(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.model_configs import DptOnnxConfig

    class DepthAnythingOnnxConfig(DptOnnxConfig):
        """DPT's config with the depth head patched while tracing (see :func:`dynamic_depth_head`)."""

        def patch_model_for_export(self, model: Any, model_kwargs: dict[str, Any] | None = None) -> Any:
            patcher = super().patch_model_for_export(model, model_kwargs=model_kwargs)
            return _stacked(patcher, dynamic_depth_head(model))

    return DepthAnythingOnnxConfig(model_config, task=task)


@contextlib.contextmanager
def _stacked(*managers: Any) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


@contextlib.contextmanager
def dynamic_depth_head(model: Any) -> Iterator[None]:
    """While exporting, Depth Anything's head computes its upsampling size from the traced shape
    (``patch_height * patch_size``) instead of ``int(...)`` of it, which tracing turns into a constant."""
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


def whisper_cross_attentions(model_config: Any, task: str) -> Any:
    from optimum.exporters.onnx.base import ConfigBehavior
    from optimum.exporters.onnx.model_configs import WhisperOnnxConfig

    class WhisperWithAttentionsOnnxConfig(WhisperOnnxConfig):
        """Whisper whose decoder also outputs ``cross_attentions.{layer}``."""

        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            outputs = super().outputs
            if self._behavior is ConfigBehavior.DECODER:
                for layer in range(self._config.decoder_layers):
                    outputs[f"cross_attentions.{layer}"] = {
                        0: "batch_size",
                        2: "decoder_sequence_length",
                        3: "encoder_sequence_length_out",
                    }
            return outputs

    return WhisperWithAttentionsOnnxConfig(model_config, task=task)


ONNX_CONFIGS: dict[str, Callable[[Any, str], Any]] = {
    "detr-with-pixel-mask": detr_with_pixel_mask,
    "mask2former": mask2former,
    "depth-anything": depth_anything,
    "whisper-cross-attentions": whisper_cross_attentions,
}


def custom_configs(config: Any, layout: str) -> dict[str, Any]:
    """optimum's ``custom_onnx_configs`` for one family config: ``model`` for single-graph layouts; the
    encoder, the decoder and the decoder with past (merged afterwards by optimum) for encoder-decoders."""
    if layout != "encoder-decoder":
        return {"model": config}
    return {
        "encoder_model": config.with_behavior("encoder"),
        "decoder_model": config.with_behavior("decoder", use_past=True, use_past_in_inputs=False),
        "decoder_with_past_model": config.with_behavior("decoder", use_past=True, use_past_in_inputs=True),
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
