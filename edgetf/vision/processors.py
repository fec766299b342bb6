"""Image processors built from ``preprocessor_config.json``, one class per processor family.

The class is chosen by the config's ``image_processor_type`` (or legacy ``feature_extractor_type``;
``...Fast`` names map to the slow processor, which is what transformers runs without torchvision),
never by model name. Missing keys take the defaults of the transformers class of that name.
Each processor turns an RGB PIL image into a float32 CHW array; ``batch`` stacks (and, for the
padding families, pads and masks) a list of them into the model's feeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..bundle import Bundle
from ..errors import BundleError, InvalidInputError
from .image import (
    aspect_ratio_size,
    center_crop,
    check_size,
    max_height_width_size,
    pad_batch,
    pixel_lut,
    resample_filter,
    resize,
    shortest_edge_size,
    size_dict,
    to_pixel_values,
    yolos_size,
)

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
_BILINEAR = 2
_BICUBIC = 3


class ImageProcessor:
    """resize -> (crop) -> rescale -> normalize, with one family's sizing rule (see subclasses)."""

    type_name: ClassVar[str] = ""
    default_mean: ClassVar[tuple[float, ...]] = IMAGENET_STANDARD_MEAN
    default_std: ClassVar[tuple[float, ...]] = IMAGENET_STANDARD_STD
    default_resample: ClassVar[int] = _BILINEAR
    pads: ClassVar[bool] = False  # True: batches are padded and come with a pixel_mask

    def __init__(self, config: dict[str, Any]):
        self.config = dict(config)
        self.do_resize = bool(config.get("do_resize", True))
        self.resample = resample_filter(config.get("resample", self.default_resample))
        self.do_rescale = bool(config.get("do_rescale", True))
        self.rescale_factor = _number(config.get("rescale_factor", 1 / 255), "rescale_factor")
        self.do_normalize = bool(config.get("do_normalize", True))
        self.image_mean = _triple(config.get("image_mean"), self.default_mean, "image_mean")
        self.image_std = _triple(config.get("image_std"), self.default_std, "image_std")
        self.fixed_size: tuple[int, int] | None = None
        self.setup(config)
        self.lut = pixel_lut(
            self.rescale_factor if self.do_rescale else None,
            self.image_mean if self.do_normalize else None,
            self.image_std if self.do_normalize else None,
        )

    def setup(self, config: dict[str, Any]) -> None:
        """Read the family's own keys."""

    # -- sizing ----------------------------------------------------------------------------------
    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the family's resize rule (before any crop)."""
        raise NotImplementedError

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the array the model gets for an image of this size (before padding)."""
        if self.fixed_size is not None:
            return self.fixed_size
        return self.resized_size(height, width) if self.do_resize else (height, width)

    def force_size(self, size: tuple[int, int]) -> None:
        """Always resize to exactly ``size`` (graphs traced at one size, e.g. Mask2Former)."""
        self.fixed_size = (int(size[0]), int(size[1]))

    # -- transforms ------------------------------------------------------------------------------
    def transform(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> uint8 HWC array at the model's size (resize, crop)."""
        if self.fixed_size is not None:
            return np.asarray(resize(image, self.fixed_size, self.resample))
        if self.do_resize:
            image = resize(image, self.resized_size(image.height, image.width), self.resample)
        return np.asarray(image)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 (3, H, W) pixel values."""
        return to_pixel_values(self.transform(image), self.lut)

    def batch(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Model feeds for prepared arrays. Non-padding families need equal sizes."""
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InvalidInputError(f"images of different processed sizes {sorted(shapes)} cannot share a batch")
        return {"pixel_values": np.stack(arrays)}

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        return self.batch([self.prepare(im) for im in images])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type_name})"


class FixedSizeProcessor(ImageProcessor):
    """ViTImageProcessor: resize to ``size`` {height, width}, ignoring the aspect ratio."""

    type_name = "ViTImageProcessor"

    def setup(self, config: dict[str, Any]) -> None:
        size = size_dict(config.get("size", {"height": 224, "width": 224}))
        if set(size) != {"height", "width"}:
            raise BundleError(f"{self.type_name} needs size {{height, width}} in preprocessor_config.json, got {size}")
        self.size = (size["height"], size["width"])

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size


class SegformerProcessor(FixedSizeProcessor):
    """SegformerImageProcessor: ViT's fixed-size resize with ImageNet-default mean/std (512x512 by default)."""

    type_name = "SegformerImageProcessor"
    default_mean = IMAGENET_DEFAULT_MEAN
    default_std = IMAGENET_DEFAULT_STD

    def setup(self, config: dict[str, Any]) -> None:
        super().setup({"size": {"height": 512, "width": 512}, **config})


class DeiTProcessor(ImageProcessor):
    """DeiTImageProcessor: resize to ``size`` {height, width} (bicubic), then center crop to ``crop_size``."""

    type_name = "DeiTImageProcessor"
    default_resample = _BICUBIC

    def setup(self, config: dict[str, Any]) -> None:
        size = size_dict(config.get("size", {"height": 256, "width": 256}))
        crop = size_dict(config.get("crop_size", {"height": 224, "width": 224}))
        for name, value in (("size", size), ("crop_size", crop)):
            if set(value) != {"height", "width"}:
                raise BundleError(f"{self.type_name} needs {name} {{height, width}} in preprocessor_config.json")
        self.size = (size["height"], size["width"])
        self.crop_size = (crop["height"], crop["width"])
        self.do_center_crop = bool(config.get("do_center_crop", True))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.fixed_size is None and self.do_center_crop:
            return self.crop_size
        return super().output_size(height, width)

    def transform(self, image: Image.Image) -> np.ndarray:
        pixels = super().transform(image)
        return center_crop(pixels, self.crop_size) if self.fixed_size is None and self.do_center_crop else pixels


class DPTProcessor(ImageProcessor):
    """DPTImageProcessor (DPT, Depth Anything): resize towards ``size`` {height, width}, optionally keeping the
    aspect ratio (the side whose scale is nearer 1 decides) and rounding to ``ensure_multiple_of``; then,
    with ``do_pad``, zero-pad (after normalization) each side to a multiple of ``size_divisor``, centered."""

    type_name = "DPTImageProcessor"
    default_resample = _BICUBIC

    def setup(self, config: dict[str, Any]) -> None:
        size = size_dict(config.get("size", {"height": 384, "width": 384}))
        if set(size) != {"height", "width"}:
            raise BundleError(f"{self.type_name} needs size {{height, width}} in preprocessor_config.json, got {size}")
        self.size = (size["height"], size["width"])
        self.keep_aspect_ratio = bool(config.get("keep_aspect_ratio", False))
        self.multiple = int(config.get("ensure_multiple_of", 1) or 1)
        self.do_pad = bool(config.get("do_pad", False))
        divisor = config.get("size_divisor")
        if self.do_pad and (isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1):
            raise BundleError(f"{self.type_name} with do_pad needs an integer size_divisor >= 1, got {divisor!r}")
        self.size_divisor = int(divisor) if self.do_pad else 1
        if self.multiple < 1:
            raise BundleError(f"{self.type_name} ensure_multiple_of must be >= 1, got {self.multiple}")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        scale_h, scale_w = self.size[0] / height, self.size[1] / width
        if self.keep_aspect_ratio:
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        out = (_round_to_multiple(scale_h * height, self.multiple), _round_to_multiple(scale_w * width, self.multiple))
        return check_size(out, (height, width))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        size = super().output_size(height, width)
        if self.do_pad and self.fixed_size is None:
            size = (_ceil_to(size[0], self.size_divisor), _ceil_to(size[1], self.size_divisor))
        return size

    def prepare(self, image: Image.Image) -> np.ndarray:
        pixels = super().prepare(image)
        if not self.do_pad or self.fixed_size is not None:
            return pixels
        height, width = pixels.shape[1:]
        pad_h, pad_w = _ceil_to(height, self.size_divisor) - height, _ceil_to(width, self.size_divisor) - width
        return np.pad(pixels, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))


class ConvNextProcessor(ImageProcessor):
    """ConvNextImageProcessor: below 384, resize the shortest edge to size/crop_pct then center crop."""

    type_name = "ConvNextImageProcessor"

    def setup(self, config: dict[str, Any]) -> None:
        size = size_dict(config.get("size", {"shortest_edge": 384}), default_to_square=False)
        if "shortest_edge" not in size:
            raise BundleError(f"{self.type_name} needs size {{shortest_edge}} in preprocessor_config.json, got {size}")
        self.shortest_edge = size["shortest_edge"]
        crop_pct = config.get("crop_pct")
        self.crop_pct = _number(224 / 256 if crop_pct is None else crop_pct, "crop_pct")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.shortest_edge < 384:
            return shortest_edge_size(height, width, int(self.shortest_edge / self.crop_pct))
        return self.shortest_edge, self.shortest_edge

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.fixed_size is None and self.do_resize and self.shortest_edge < 384:
            return self.shortest_edge, self.shortest_edge
        return super().output_size(height, width)

    def transform(self, image: Image.Image) -> np.ndarray:
        pixels = super().transform(image)
        if self.fixed_size is None and self.do_resize and self.shortest_edge < 384:
            pixels = center_crop(pixels, (self.shortest_edge, self.shortest_edge))
        return pixels


class DetrProcessor(ImageProcessor):
    """DetrImageProcessor: shortest/longest-edge resize, zero padding to the batch, pixel mask."""

    type_name = "DetrImageProcessor"
    default_mean = IMAGENET_DEFAULT_MEAN
    default_std = IMAGENET_DEFAULT_STD
    pads = True

    def setup(self, config: dict[str, Any]) -> None:
        size = config.get("size")
        max_size = config.get("max_size", None if size is None else 1333)
        if size is None:
            size = {"shortest_edge": 800, "longest_edge": 1333}
        self.size = size_dict(size, max_size=max_size, default_to_square=False)
        keys = set(self.size)
        if keys not in ({"shortest_edge", "longest_edge"}, {"max_height", "max_width"}, {"height", "width"}):
            raise BundleError(f"{self.type_name} cannot resize with size {self.size} from preprocessor_config.json")
        legacy = config.get("pad_and_return_pixel_mask")  # overrides do_pad, as in transformers
        self.do_pad = bool(config.get("do_pad", True) if legacy is None else legacy)
        pad_size = config.get("pad_size")
        self.pad_size = None if pad_size is None else (int(pad_size["height"]), int(pad_size["width"]))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        size = self.size
        if "shortest_edge" in size:
            return aspect_ratio_size(height, width, size["shortest_edge"], size["longest_edge"])
        if "max_height" in size:
            return max_height_width_size(height, width, size["max_height"], size["max_width"])
        return size["height"], size["width"]

    def batch(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if not self.do_pad:
            return super().batch(arrays)
        pixel_values, pixel_mask = pad_batch(arrays, self.pad_size)
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


class YolosProcessor(DetrProcessor):
    """YolosImageProcessor: DETR's sizing with the shortest/longest-edge size rounded down to a multiple
    of 16; batches are padded at the bottom/right but the model gets no pixel mask."""

    type_name = "YolosImageProcessor"
    mod_size = 16

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if "shortest_edge" not in self.size:
            return super().resized_size(height, width)
        size = yolos_size(height, width, self.size["shortest_edge"], self.size["longest_edge"])
        return check_size((size[0] - size[0] % self.mod_size, size[1] - size[1] % self.mod_size), (height, width))

    def batch(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if not self.do_pad:
            return ImageProcessor.batch(self, arrays)
        return {"pixel_values": pad_batch(arrays, self.pad_size)[0]}


class Mask2FormerProcessor(ImageProcessor):
    """Mask2FormerImageProcessor: torchvision-style resize, sizes rounded up to ``size_divisor``, padding."""

    type_name = "Mask2FormerImageProcessor"
    default_mean = IMAGENET_DEFAULT_MEAN
    default_std = IMAGENET_DEFAULT_STD
    pads = True

    def setup(self, config: dict[str, Any]) -> None:
        max_size = config.get("max_size", 1333)
        size = config.get("size")
        if size is None:
            size = {"shortest_edge": 800, "longest_edge": max_size}
        self.size = size_dict(size, max_size=max_size, default_to_square=False)
        if set(self.size) not in ({"shortest_edge", "longest_edge"}, {"height", "width"}):
            raise BundleError(f"{self.type_name} cannot resize with size {self.size} from preprocessor_config.json")
        self.size_divisor = int(config.get("size_divisor", 32))
        pad_size = config.get("pad_size")
        self.pad_size = None if pad_size is None else (int(pad_size["height"]), int(pad_size["width"]))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if "height" in self.size:
            out = (self.size["height"], self.size["width"])
        else:
            out = shortest_edge_size(height, width, self.size["shortest_edge"], self.size["longest_edge"])
        if self.size_divisor > 0:
            out = tuple(int(math.ceil(v / self.size_divisor) * self.size_divisor) for v in out)  # type: ignore[assignment]
        return out

    def batch(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        pixel_values, pixel_mask = pad_batch(arrays, self.pad_size)
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


class GLPNProcessor(ImageProcessor):
    """GLPNImageProcessor: round height and width down to a multiple of ``size_divisor``; rescale only."""

    type_name = "GLPNImageProcessor"

    def __init__(self, config: dict[str, Any]):
        # GLPN rescales by a constant 1/255 and never normalizes, whatever the config says.
        super().__init__({**config, "rescale_factor": 1 / 255, "do_normalize": False})

    def setup(self, config: dict[str, Any]) -> None:
        self.size_divisor = int(config.get("size_divisor", 32))
        if self.size_divisor < 1:
            raise BundleError(f"{self.type_name} size_divisor must be >= 1, got {self.size_divisor}")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        size = (height // self.size_divisor * self.size_divisor, width // self.size_divisor * self.size_divisor)
        if size[0] < 1 or size[1] < 1:
            raise InvalidInputError(
                f"image of {width}x{height} pixels is smaller than this depth model's minimum of "
                f"{self.size_divisor}x{self.size_divisor} (sizes are rounded down to multiples of {self.size_divisor})"
            )
        return check_size(size, (height, width))


PROCESSORS: dict[str, type[ImageProcessor]] = {
    cls.type_name: cls
    for cls in (
        FixedSizeProcessor,
        SegformerProcessor,
        DeiTProcessor,
        ConvNextProcessor,
        DetrProcessor,
        YolosProcessor,
        Mask2FormerProcessor,
        GLPNProcessor,
        DPTProcessor,
    )
}
# config.json model_type -> processor type, for preprocessor configs that name no type (transformers' auto map).
_BY_MODEL_TYPE = {
    "vit": "ViTImageProcessor",
    "swin": "ViTImageProcessor",
    "deit": "DeiTImageProcessor",
    "convnext": "ConvNextImageProcessor",
    "detr": "DetrImageProcessor",
    "yolos": "YolosImageProcessor",
    "segformer": "SegformerImageProcessor",
    "mask2former": "Mask2FormerImageProcessor",
    "glpn": "GLPNImageProcessor",
    "dpt": "DPTImageProcessor",
    "depth_anything": "DPTImageProcessor",
}


def processor_type(config: dict[str, Any], model_config: dict[str, Any] | None = None) -> str | None:
    """The slow processor class name a preprocessor config asks for."""
    name = config.get("image_processor_type") or config.get("feature_extractor_type")
    if isinstance(name, str):
        name = name.removesuffix("Fast")
        if name.endswith("FeatureExtractor"):
            name = name[: -len("FeatureExtractor")] + "ImageProcessor"
        return name
    return _BY_MODEL_TYPE.get(str((model_config or {}).get("model_type")))


def make_processor(config: dict[str, Any], model_config: dict[str, Any] | None = None) -> ImageProcessor:
    name = processor_type(config, model_config)
    if name not in PROCESSORS:
        raise BundleError(
            f"image processor {name!r} is not supported by edgetf; supported: {', '.join(sorted(PROCESSORS))}"
        )
    return PROCESSORS[name](config)


def processor_from_bundle(bundle: Bundle) -> ImageProcessor:
    config = bundle.read_json_optional("preprocessor_config.json")
    if config is None:
        raise BundleError(f"{bundle.root} has no preprocessor_config.json; an image model's bundle needs it")
    return make_processor(config, bundle.config)


def _round_to_multiple(value: float, multiple: int) -> int:
    """DPT's ``constrain_to_multiple_of`` (no bounds): Python's round-half-to-even of value / multiple."""
    return int(round(value / multiple) * multiple)


def _ceil_to(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor) * divisor)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BundleError(f"preprocessor_config.json {name}={value!r} must be a positive number")
    return float(value)


def _triple(value: Any, default: tuple[float, ...], name: str) -> tuple[float, ...]:
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    raise BundleError(f"preprocessor_config.json {name}={value!r} must be a number or a list of 3 numbers")
