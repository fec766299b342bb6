"""Starlette's names, imported when first used, so that ``edgetf.serve`` and its modules import (and
``import edgetf`` never fails) without the [serve] extra; using one without it raises ImportError naming it."""

from __future__ import annotations

import importlib
from typing import Any

EXTRA_HINT = "the server needs the [serve] extra: pip install 'edgetf[serve]' (starlette, uvicorn, python-multipart)"
_HOMES = {
    "Starlette": "starlette.applications",
    "UploadFile": "starlette.datastructures",
    "HTTPException": "starlette.exceptions",
    "Request": "starlette.requests",
    "JSONResponse": "starlette.responses",
    "PlainTextResponse": "starlette.responses",
    "Response": "starlette.responses",
    "StreamingResponse": "starlette.responses",
    "Route": "starlette.routing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(home), name)
    except ImportError as exc:
        raise ImportError(EXTRA_HINT) from exc
