"""Pipeline outputs as JSON values, losslessly: what the server returns and the batch job writes.

numpy arrays become nested lists (all of them: an embedding keeps every number), numpy scalars
Python numbers, tuples lists, PIL images (segmentation masks, depth maps) base64 PNG strings (as
the Hugging Face Inference API returns masks), bytes base64 strings. The `run` command's
``to_jsonable`` summarizes large arrays and images instead, for reading on a terminal.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np


def is_image(value: Any) -> bool:
    return hasattr(value, "mode") and hasattr(value, "size") and hasattr(value, "getbands") and hasattr(value, "save")


def png_base64(image: Any) -> str:
    """A PIL image as a base64 PNG string."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_json_value(value: Any) -> Any:
    """``value`` with every array, numpy scalar, image and byte string turned into JSON types.

    Non-finite floats become None (JSON has no NaN); anything else unknown becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return to_json_value(value.astype(object).tolist())
        return value.tolist()
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if is_image(value):
        return png_base64(value)
    return str(value)
