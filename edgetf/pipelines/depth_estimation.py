"""depth-estimation: same inputs and outputs as transformers' DepthEstimationPipeline (GLPN family)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..vision.interpolate import bicubic
from .image_base import ImagePipeline, as_items


def post_process_depth(predicted_depth: np.ndarray, target_size: tuple[int, int]) -> np.ndarray:
    """One (H, W) depth map resized to ``target_size`` (height, width), bicubic as transformers does."""
    depth = bicubic(predicted_depth.astype(np.float32)[None, None], target_size)
    return depth[0, 0]  # (not np.squeeze, which also drops a height or width of 1)


def depth_image(depth: np.ndarray) -> Image.Image:
    """The 8-bit visualisation: min-max normalised, times 255, truncated (as the pipeline does).
    A flat map (max == min, where transformers divides 0 by 0) renders black."""
    low, high = depth.min(), depth.max()
    if not high > low:
        return Image.fromarray(np.zeros(depth.shape, dtype=np.uint8))
    scaled = (depth - low) / (high - low)
    return Image.fromarray((scaled * 255).astype("uint8"))


class DepthEstimationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``{"predicted_depth": float32 (H, W) array, "depth": PIL image}`` at the input's size.

    A list of images gives a list of such dicts. ``predicted_depth`` is the model's depth map resized
    (bicubic) to the input image's size, a numpy array where transformers returns a torch tensor.
    """

    options_accepted: ClassVar[dict[str, Any]] = {"batch_size": 1}

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        items, single = as_items(inputs, self.task)
        results = []
        for raw, size in self.raw_outputs(items, batch_size=opts["batch_size"]):
            depth = post_process_depth(raw, size)
            results.append({"predicted_depth": depth, "depth": depth_image(depth)})
        return results[0] if single else results

    def raw_outputs(self, items: list[Any], batch_size: int = 1) -> list[tuple[np.ndarray, tuple[int, int]]]:
        """Per image: (the model's predicted_depth (h, w) at the processed size, original (height, width))."""
        session = self.session()
        out = []
        for chunk in self.chunks(items, batch_size):
            depth = session.run(chunk.feeds, ["predicted_depth"])["predicted_depth"]
            out.extend((depth[i], size) for i, size in enumerate(chunk.sizes))
        return out
