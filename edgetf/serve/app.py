"""The ASGI application: routes, JSON errors, the API key check and the request size limit."""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from . import web
from .errors import ApiError, BodyTooLarge
from .generic import run_pipeline
from .models import Limits, ModelStore
from .openai_routes import completions, embeddings, get_model, list_models, transcriptions, translations

log = logging.getLogger("edgetf.serve")


def error_response(error: ApiError) -> web.JSONResponse:
    return web.JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def on_api_error(_request: web.Request, exc: Exception) -> web.Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_http_error(request: web.Request, exc: Exception) -> web.Response:
    assert isinstance(exc, web.HTTPException)
    message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    return error_response(ApiError(exc.status_code, message, headers=exc.headers))


async def on_too_large(request: web.Request, _exc: Exception) -> web.Response:
    return error_response(too_large(request.app.state.max_body))


async def on_unexpected(_request: web.Request, exc: Exception) -> web.Response:
    log.exception("unexpected error", exc_info=exc)
    return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the server's limit of {limit} bytes (--max-body-mb)")


async def health(_request: web.Request) -> web.Response:
    return web.JSONResponse({"status": "ok"})


async def send_error(send: Any, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI wrapper: the bearer key on /v1 routes, and the body limit (a declared Content-Length over it is
    refused before reading; a body that grows past it while read raises BodyTooLarge -> 413)."""

    def __init__(self, app: Any, *, max_body: int, api_key: str | None):
        self.app = app
        self.max_body = max_body
        self.api_key = api_key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"].startswith("/v1"):
            given = headers.get(b"authorization", b"").decode("latin-1")
            expected = f"Bearer {self.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                error = ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')")
                await send_error(send, error)
                return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await send_error(send, too_large(self.max_body))
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


def create_app(
    models_dir: str | Path,
    *,
    api_key: str | None = None,
    limits: Limits | None = None,
    max_body_bytes: int = 25 * 1024 * 1024,
    dtype: str = "auto",
    device: str = "cpu",
) -> Any:
    """The ASGI app serving every bundle folder under ``models_dir`` (see edgetf.serve)."""
    store = ModelStore(models_dir, limits=limits, dtype=dtype, device=device)

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield
        store.close()

    routes = [
        web.Route("/health", health),
        web.Route("/v1/models", list_models),
        web.Route("/v1/models/{model:path}", get_model),
        web.Route("/v1/embeddings", embeddings, methods=["POST"]),
        web.Route("/v1/completions", completions, methods=["POST"]),
        web.Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        web.Route("/v1/audio/translations", translations, methods=["POST"]),
        web.Route("/v1/pipelines/{model:path}", run_pipeline, methods=["POST"]),
    ]
    handlers = {
        ApiError: on_api_error,
        web.HTTPException: on_http_error,
        BodyTooLarge: on_too_large,
        Exception: on_unexpected,
    }
    app = web.Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.store = store
    app.state.max_body = max_body_bytes
    guarded = Guard(app, max_body=max_body_bytes, api_key=api_key)
    guarded.state = app.state  # type: ignore[attr-defined]
    return guarded
