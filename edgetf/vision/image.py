"""Image input and the transforms of Hugging Face image processors, in numpy and PIL.

Everything here reproduces what transformers' *slow* image processors and ``load_image`` do, step
by step, so pixel values come out bit-identical:

* ``load_image``: file path, raw bytes, base64 / data URI string, PIL image or numpy HWC array ->
  EXIF-transposed RGB PIL image (``PIL.Image.convert("RGB")`` for every mode, as transformers does).
* ``resize``: PIL's own ``Image.resize`` with the processor's resampling filter (transformers
  round-trips through PIL too), output sizes computed with the processors' own integer rounding.
* ``center_crop``: crop (zero-padding when the image is too small), on the uint8 image.
* ``to_pixel_values``: rescale then normalize, evaluated once per possible uint8 value with the
  processors' dtypes (float64 rescale cast to float32, float32 normalize) and applied as a lookup
  table, so it is exact and costs one gather per channel.
* ``pad_batch``: bottom/right zero padding to a common size plus the pixel mask.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import struct
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import BundleError, InvalidInputError

ImageInput = Union[str, bytes, bytearray, memoryview, "os.PathLike[str]", Image.Image, np.ndarray]

# PIL resampling filters by the integer transformers stores in preprocessor_config.json.
RESAMPLE: dict[int, Image.Resampling] = {
    0: Image.Resampling.NEAREST,
    1: Image.Resampling.LANCZOS,
    2: Image.Resampling.BILINEAR,
    3: Image.Resampling.BICUBIC,
    4: Image.Resampling.BOX,
    5: Image.Resampling.HAMMING,
}
# The largest image (in pixels) any resize step may produce; beyond it memory would not stay bounded
# (e.g. a 1x100000 strip resized so that its *shortest* edge becomes 256).
MAX_RESIZE_PIXELS = 1 << 26
# PIL errors that mean "this is not a readable image" (broken PNG chunks raise SyntaxError).
_PIL_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
_ORIENTATION = 0x0112  # EXIF tag
_ACCEPTED = "a file path, raw bytes, a base64 string, a PIL.Image.Image or a numpy HWC array"


def load_image(image: Any, *, what: str = "image") -> Image.Image:
    """An RGB PIL image from any accepted input, as transformers' ``load_image`` makes it.

    Raises InvalidInputError naming ``what`` when the input is unreadable, empty or of a wrong type.
    """
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = image_from_array(image, what=what)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        pil = _open(io.BytesIO(bytes(image)), f"{what} (raw bytes, {len(image)} bytes)")
    elif isinstance(image, (str, os.PathLike)):
        pil = _from_string(image, what)
    else:
        raise InvalidInputError(f"{what} must be {_ACCEPTED}; got {type(image).__name__}")
    if pil.width < 1 or pil.height < 1:
        raise InvalidInputError(f"{what} is empty ({pil.width}x{pil.height} pixels); an image needs at least 1x1")
    try:
        # transformers: ImageOps.exif_transpose(image).convert("RGB"); both steps copy even when they
        # change nothing, so they only run when the orientation tag or the mode asks for it.
        if pil.getexif().get(_ORIENTATION, 1) not in (1, None):
            pil = ImageOps.exif_transpose(pil)
        return pil if pil.mode == "RGB" else pil.convert("RGB")
    except _PIL_READ_ERRORS as exc:
        raise InvalidInputError(f"{what} ({pil.mode} {pil.width}x{pil.height}) cannot be read as RGB: {exc}") from exc


def _from_string(source: str | os.PathLike[str], what: str) -> Image.Image:
    path = os.fspath(source)
    if os.path.isfile(path):
        return _open(path, f"{what} file {path!r}")
    if os.path.isdir(path):
        raise InvalidInputError(f"{what} {path!r} is a directory; pass an image file's path")
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{what} {path[:80]!r} is a URL; edgetf runs offline: download it and pass the file path or bytes"
        )
    text = path.split(",", 1)[1] if path.startswith("data:image/") and "," in path else path
    try:
        data = base64.b64decode(text, validate=True) if text else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        shown = path if len(path) <= 120 else path[:120] + "..."
        raise InvalidInputError(f"{what} {shown!r} is not an existing file nor a base64-encoded image")
    return _open(io.BytesIO(data), f"{what} (base64 string)")


def _open(source: Any, described: str) -> Image.Image:
    try:
        pil = Image.open(source)
        pil.load()  # decode now: truncated files fail here, not later inside a transform
    except _PIL_READ_ERRORS as exc:
        raise InvalidInputError(f"{described} is not a readable image: {type(exc).__name__}: {exc}") from exc
    return pil


def image_from_array(array: np.ndarray, *, what: str = "image") -> Image.Image:
    """A PIL image from a numpy array in (height, width) or (height, width, 1|3) layout.

    uint8 arrays are taken as they are; integer arrays and integral floats must lie in [0, 255];
    other float arrays must lie in [0, 1] and are scaled by 255 and truncated, as transformers'
    ``to_pil_image`` does. 4-channel arrays are refused: RGBA and CMYK cannot be told apart.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        hint = ""
        if array.ndim == 3 and array.shape[-1] == 4:
            hint = "; 4 channels could be RGBA or CMYK: pass PIL.Image.fromarray(array, mode='RGBA') or drop a channel"
        elif array.ndim == 3 and array.shape[0] in (1, 3):
            hint = "; it looks channels-first: pass array.transpose(1, 2, 0)"
        raise InvalidInputError(
            f"{what} as a numpy array must be (height, width) or (height, width, 3), got shape {array.shape}{hint}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInputError(f"{what} is empty (array shape {array.shape}); an image needs at least 1x1")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype.kind in "iuf":
        pixels = _to_uint8(array, what)
    else:
        raise InvalidInputError(f"{what} as a numpy array must be of an integer or float dtype, got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(pixels))


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{what} contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    integral = array.dtype.kind in "iu" or bool(np.all(array == np.trunc(array)))
    if integral:
        if low < 0 or high > 255:
            raise InvalidInputError(
                f"{what} has integer values in [{low:g}, {high:g}]; accepted: [0, 255] (or floats in [0, 1])"
            )
        return array.astype(np.uint8)
    if low < 0 or high > 1:
        raise InvalidInputError(
            f"{what} is a float image with values in [{low:.4g}, {high:.4g}]; accepted: floats in [0, 1] "
            "or integral values in [0, 255]"
        )
    return (array.astype(np.float64) * 255).astype(np.float32).astype(np.uint8)


# -- sizes -----------------------------------------------------------------------------------------
def size_dict(size: Any, *, max_size: int | None = None, default_to_square: bool = True) -> dict[str, int]:
    """The processors' ``get_size_dict``: turn a legacy int / list ``size`` into a size dict."""
    valid = (
        {"height", "width"},
        {"shortest_edge"},
        {"shortest_edge", "longest_edge"},
        {"longest_edge"},
        {"max_height", "max_width"},
    )
    if isinstance(size, dict):
        result = dict(size)
    elif isinstance(size, int) and default_to_square:
        if max_size is not None:
            raise BundleError("preprocessor_config.json: an int size with max_size needs a non-square size")
        result = {"height": size, "width": size}
    elif isinstance(size, int):
        result = {"shortest_edge": size}
        if max_size is not None:
            result["longest_edge"] = max_size
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        result = {"height": size[0], "width": size[1]}
    elif size is None and max_size is not None and not default_to_square:
        result = {"longest_edge": max_size}
    else:
        raise BundleError(f"preprocessor_config.json has a size {size!r} that cannot be read")
    if set(result) not in valid:
        raise BundleError(
            f"preprocessor_config.json size {result!r} must have one of the key sets {[sorted(v) for v in valid]}"
        )
    return {k: int(v) for k, v in result.items()}


def shortest_edge_size(height: int, width: int, shortest: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision-style size (``image_transforms.get_resize_output_image_size``, not square)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest, int(shortest * long / short)
    if max_size is not None:
        if max_size <= shortest:
            raise BundleError(f"max_size = {max_size} must be greater than the shortest edge {shortest}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _capped_shortest_edge(height: int, width: int, size: int, max_size: int | None) -> tuple[int, float | None]:
    """(shortest edge, its unrounded value or None): ``size``, lowered so the longest edge stays within
    ``max_size`` (transformers' ``get_size_with_aspect_ratio``, shared by DETR and YOLOS)."""
    if max_size is not None:
        small, large = float(min(height, width)), float(max(height, width))
        if large / small * size > max_size:
            raw_size = max_size * small / large
            return int(round(raw_size)), raw_size
    return size, None


def aspect_ratio_size(height: int, width: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """DETR-style size (``get_size_with_aspect_ratio``): shortest edge ``size``, longest at most ``max_size``."""
    size, raw_size = _capped_shortest_edge(height, width, size, max_size)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return (int(raw_size * height / width) if raw_size is not None else int(size * height / width)), size
    return size, (int(raw_size * width / height) if raw_size is not None else int(size * width / height))


def yolos_size(height: int, width: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """YOLOS's ``get_size_with_aspect_ratio`` before its multiple-of-16 rounding (it tests width < height
    first, unlike DETR's; the results agree except in that order of checks)."""
    size, raw_size = _capped_shortest_edge(height, width, size, max_size)
    if width < height:
        return (int(raw_size * height / width) if raw_size is not None else int(size * height / width)), size
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    return size, (int(raw_size * width / height) if raw_size is not None else int(size * width / height))


def max_height_width_size(height: int, width: int, max_height: int, max_width: int) -> tuple[int, int]:
    """``get_image_size_for_max_height_width``: the largest size within the box, keeping aspect ratio."""
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


def check_size(size: tuple[int, int], original: tuple[int, int], what: str = "image") -> tuple[int, int]:
    """Refuse resize targets that are empty or too large for memory to stay bounded."""
    height, width = size
    if height < 1 or width < 1:
        raise InvalidInputError(
            f"{what} of {original[1]}x{original[0]} pixels (width x height) would be resized to {width}x{height}: "
            "too small or too elongated for this model's image processor"
        )
    if height * width > MAX_RESIZE_PIXELS:
        raise InvalidInputError(
            f"{what} of {original[1]}x{original[0]} pixels would be resized to {width}x{height} "
            f"({height * width / 1e6:.0f} M pixels, limit {MAX_RESIZE_PIXELS / 1e6:.0f} M): "
            "its aspect ratio is too extreme"
        )
    return height, width


# -- transforms ------------------------------------------------------------------------------------
def resample_filter(value: Any) -> Image.Resampling:
    if isinstance(value, bool) or not isinstance(value, int) or value not in RESAMPLE:
        raise BundleError(f"preprocessor_config.json resample={value!r}; accepted: {sorted(RESAMPLE)}")
    return RESAMPLE[value]


def resize(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """Resize to (height, width) with PIL, as the processors do (no reducing_gap)."""
    height, width = check_size(size, (image.height, image.width))
    return image.resize((width, height), resample=resample)


def center_crop(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Center crop of an HWC array to (height, width); zero-pads when the image is smaller."""
    orig_h, orig_w = pixels.shape[:2]
    crop_h, crop_w = int(size[0]), int(size[1])
    top, left = (orig_h - crop_h) // 2, (orig_w - crop_w) // 2
    if top >= 0 and left >= 0 and top + crop_h <= orig_h and left + crop_w <= orig_w:
        return pixels[top : top + crop_h, left : left + crop_w]
    new_h, new_w = max(crop_h, orig_h), max(crop_w, orig_w)
    canvas = np.zeros((new_h, new_w) + pixels.shape[2:], dtype=pixels.dtype)
    top_pad, left_pad = math.ceil((new_h - orig_h) / 2), math.ceil((new_w - orig_w) / 2)
    canvas[top_pad : top_pad + orig_h, left_pad : left_pad + orig_w] = pixels
    top, left = top + top_pad, left + left_pad
    return canvas[max(0, top) : min(new_h, top + crop_h), max(0, left) : min(new_w, left + crop_w)]


def pixel_lut(
    rescale: float | None, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int = 3
) -> np.ndarray:
    """(channels, 256) float32 table: what rescale-then-normalize makes of each uint8 value.

    Same dtypes as transformers: rescale is ``float64(x) * scale`` cast to float32; normalize is
    ``(x - mean) / std`` in float32 (uint8 input is first cast to float32 when not rescaled).
    """
    values = np.arange(256, dtype=np.uint8).reshape(1, 256).repeat(channels, axis=0)
    x = (values.astype(np.float64) * rescale).astype(np.float32) if rescale is not None else values
    if mean is not None and std is not None:
        x = x.astype(np.float32) if x.dtype != np.float32 else x
        m = np.asarray(mean, dtype=np.float32).reshape(channels, 1)
        s = np.asarray(std, dtype=np.float32).reshape(channels, 1)
        x = (x - m) / s
    return np.ascontiguousarray(x, dtype=np.float32)


def to_pixel_values(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 CHW through a :func:`pixel_lut` table."""
    channels = pixels.shape[2]
    out = np.empty((channels, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    for c in range(channels):
        np.take(lut[c], pixels[:, :, c], out=out[c])
    return out


def pad_batch(arrays: Sequence[np.ndarray], size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad CHW arrays at the bottom/right to ``size`` (default: the largest in the batch).

    Returns (pixel_values (N, C, H, W) float32, pixel_mask (N, H, W) int64 with 1 on real pixels).
    """
    height = max(a.shape[1] for a in arrays) if size is None else size[0]
    width = max(a.shape[2] for a in arrays) if size is None else size[1]
    for a in arrays:
        if a.shape[1] > height or a.shape[2] > width:
            raise InvalidInputError(f"an image of {a.shape[2]}x{a.shape[1]} does not fit the pad size {width}x{height}")
    batch = np.zeros((len(arrays), arrays[0].shape[0], height, width), dtype=np.float32)
    mask = np.zeros((len(arrays), height, width), dtype=np.int64)
    for i, a in enumerate(arrays):
        batch[i, :, : a.shape[1], : a.shape[2]] = a
        mask[i, : a.shape[1], : a.shape[2]] = 1
    return batch, mask
