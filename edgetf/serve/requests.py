"""Reading request bodies: JSON objects, multipart forms and typed fields, with 400s that name the field."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from . import web
from .errors import ApiError, BodyTooLarge

_MISSING: Any = object()


async def json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


async def form(request: web.Request, max_bytes: int) -> Any:
    """The multipart (or urlencoded) form; parts may be as large as the request may be."""
    try:
        return await request.form(max_files=16, max_fields=64, max_part_size=max_bytes)
    except (ApiError, BodyTooLarge):
        raise
    except Exception as exc:  # python-multipart / starlette parse errors (several types)
        raise ApiError(400, f"the multipart form cannot be read: {exc}") from None


def field(
    body: Any, name: str, kinds: type | tuple[type, ...], default: Any = _MISSING, *, allow_none: bool = True
) -> Any:
    """``body[name]`` checked against ``kinds`` (bool is never taken for a number); 400 naming it otherwise."""
    value = body.get(name, _MISSING)
    if value is _MISSING or (value is None and allow_none):
        if default is _MISSING:
            raise ApiError(400, f"missing required field {name!r}", param=name)
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    is_bool = isinstance(value, bool)
    if not isinstance(value, kinds) or (is_bool and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ApiError(400, f"field {name!r} must be {names}, got {type(value).__name__}: {value!r:.80}", param=name)
    return value


def number(body: Any, name: str, default: float, low: float, high: float) -> float:
    value = field(body, name, (int, float, str), default)
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, f"field {name!r} must be a number, got {value!r:.80}", param=name) from None
    if not low <= number <= high:
        raise ApiError(400, f"field {name!r} must be between {low:g} and {high:g}, got {number:g}", param=name)
    return number


def integer(body: Any, name: str, default: int | None, low: int, high: int) -> int | None:
    value = field(body, name, (int, str), default)
    if value is None:
        return None
    try:
        result = int(value)
    except ValueError:
        raise ApiError(400, f"field {name!r} must be an integer, got {value!r:.80}", param=name) from None
    if not low <= result <= high:
        raise ApiError(400, f"field {name!r} must be between {low} and {high}, got {result}", param=name)
    return result


def base64_bytes(text: str, what: str) -> bytes:
    """The bytes of a base64 string (a ``data:...;base64,`` prefix allowed); 422 naming ``what`` otherwise.
    File paths are never opened: a string input to an audio or image task must be the file's content."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise ApiError(
            422,
            f"{what} is a string that is not base64; send the file's content base64-encoded, as a multipart "
            "file, or as the raw request body (the server never opens paths)",
            param="inputs",
        )
    return data


async def upload_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, web.UploadFile):
        data = await value.read()
        if not data:
            raise ApiError(400, f"the uploaded file {name!r} ({value.filename!r}) is empty", param=name)
        return data
    raise ApiError(400, f"field {name!r} must be an uploaded file (multipart/form-data)", param=name)
