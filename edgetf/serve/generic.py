"""``POST /v1/pipelines/{model}``: any bundle's task, Hugging Face Inference API style.

Body: JSON ``{"inputs": ..., "parameters": {...}}``; or a multipart form whose file part(s) are the
inputs (fields ``inputs`` or ``file``, several for a list) with ``parameters`` as a JSON string; or
the raw bytes of an image or audio file. Returns the pipeline's own output as JSON (arrays as lists,
PIL images as base64 PNG). Audio and image tasks take file contents only (base64 strings in JSON);
a string is never taken for a path, so nothing outside MODELS_DIR is opened.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..jsonable import to_json_value
from . import web
from .errors import ApiError
from .requests import base64_bytes, form, json_object, upload_bytes

AUDIO_TASKS = ("automatic-speech-recognition", "audio-classification")
IMAGE_TASKS = ("image-classification", "object-detection", "image-segmentation", "depth-estimation")


def media_inputs(value: Any, task: str, what: str = "inputs") -> Any:
    """JSON inputs of an audio/image task as bytes (base64 decoded) or, for audio, an array dict."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64_bytes(value, what)
    if isinstance(value, list) and value and what == "inputs":
        return [media_inputs(v, task, f"inputs[{i}]") for i, v in enumerate(value)]
    if task in AUDIO_TASKS and isinstance(value, dict) and set(value) <= {"array", "raw", "sampling_rate"}:
        samples = value.get("array", value.get("raw"))
        if not isinstance(samples, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in samples
        ):
            raise ApiError(422, f"{what}: the audio dict's 'array' must be a list of numbers", param="inputs")
        return {"array": np.asarray(samples, dtype=np.float32), "sampling_rate": value.get("sampling_rate")}
    accepted = "a base64 string of the file, a list of them"
    if task in AUDIO_TASKS:
        accepted += ", or {'array': [numbers], 'sampling_rate': int}"
    raise ApiError(422, f"{what} of {task} must be {accepted}; got {type(value).__name__}", param="inputs")


def parameters_of(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ApiError(400, f"parameters is not valid JSON: {exc}", param="parameters") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"parameters must be a JSON object, got {type(value).__name__}", param="parameters")
    return value


async def read_request(request: web.Request, task: str) -> tuple[Any, dict[str, Any]]:
    """(inputs, parameters) of any of the three body kinds."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    media = task in AUDIO_TASKS or task in IMAGE_TASKS
    if kind == "application/json" or kind.endswith("+json"):
        body = await json_object(request)
        if "inputs" not in body:
            raise ApiError(400, "missing required field 'inputs'", param="inputs")
        inputs = body["inputs"]
        return (media_inputs(inputs, task) if media else inputs), parameters_of(body.get("parameters"))
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = await form(request, request.app.state.max_body)
        parts = fields.getlist("inputs") + fields.getlist("file")
        if not parts:
            raise ApiError(400, "the form needs an 'inputs' (or 'file') field", param="inputs")
        values = [await upload_bytes(p, "inputs") if isinstance(p, web.UploadFile) else p for p in parts]
        if media:
            values = [media_inputs(v, task) for v in values]
        return (values[0] if len(values) == 1 else values), parameters_of(fields.get("parameters"))
    if not media:
        raise ApiError(400, f"{task} takes a JSON body {{'inputs': ..., 'parameters': {{...}}}}; got {kind or 'none'}")
    data = await request.body()
    if not data:
        raise ApiError(400, "the request body is empty; send the file's bytes", param="inputs")
    return data, {}


async def run_pipeline(request: web.Request) -> web.Response:
    store = request.app.state.store
    name = request.path_params["model"]
    task = store.task(name)
    if task is None:
        raise ApiError(500, f"model {name!r}: cannot tell its task (no edgetf.json, config.json names none)")
    inputs, parameters = await read_request(request, task)
    output = await store.call(name, lambda pipe: to_json_value(pipe(inputs, **parameters)))
    return web.JSONResponse(output)
