"""What every image task pipeline shares: the image processor, input handling, batching, the demo."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..batching import check_batch_size
from ..errors import InvalidInputError
from ..vision.image import load_image
from ..vision.processors import ImageProcessor, processor_from_bundle
from ..vision.samples import demo_image
from .base import Pipeline


def as_items(inputs: Any, task: str) -> tuple[list[Any], bool]:
    """(images, single): a list/tuple is a batch; anything else (path, bytes, PIL, array) one image."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs), False
    if inputs is None:
        raise InvalidInputError(f"{task} needs an image (file path, bytes, PIL image or numpy array), got None")
    return [inputs], True


class ImagePipeline(Pipeline):
    """Base of the image task pipelines: builds the processor from preprocessor_config.json."""

    processor: ImageProcessor

    def setup(self) -> None:
        self.processor = processor_from_bundle(self.bundle)

    def cli_inputs(self, args: list[str]) -> Any:
        """Image file path(s) from the command line."""
        return args[0] if len(args) == 1 else list(args)

    def demo_input(self) -> Image.Image:
        return demo_image()

    def chunks(self, items: list[Any], batch_size: int = 1) -> Iterator[Chunk]:
        """Model feeds for consecutive images, loaded and prepared one chunk at a time.

        Padding processors (DETR, Mask2Former) pad each chunk and give a pixel mask; the others
        start a new chunk where the processed size changes.
        """
        batch_size = check_batch_size(batch_size)
        arrays: list[np.ndarray] = []
        sizes: list[tuple[int, int]] = []
        for i, item in enumerate(items):
            image = load_image(item, what="image" if len(items) == 1 else f"image {i}")
            array = self.processor.prepare(image)
            full = len(arrays) == batch_size
            if arrays and (full or (not self.processor.pads and array.shape != arrays[0].shape)):
                yield Chunk(sizes, self.processor.batch(arrays))
                arrays, sizes = [], []
            arrays.append(array)
            sizes.append((image.height, image.width))
        if arrays:
            yield Chunk(sizes, self.processor.batch(arrays))


@dataclass
class Chunk:
    """Model feeds for a few images and their original (height, width)."""

    sizes: list[tuple[int, int]]
    feeds: dict[str, np.ndarray]
