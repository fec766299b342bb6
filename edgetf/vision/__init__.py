"""Image input, image processors (preprocessor_config.json) and torch-compatible resampling, in numpy/PIL."""

from .image import load_image
from .processors import ImageProcessor, make_processor, processor_from_bundle

__all__ = ["ImageProcessor", "load_image", "make_processor", "processor_from_bundle"]
