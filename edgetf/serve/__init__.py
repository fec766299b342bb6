"""edgetf.serve: a local HTTP server over the bundles in a folder (the ``[serve]`` extra).

    python -m edgetf serve MODELS_DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]

OpenAI-compatible routes (``/v1/models``, ``/v1/embeddings``, ``/v1/completions`` with SSE streaming,
``/v1/audio/transcriptions``, ``/v1/audio/translations``) and ``/v1/pipelines/{model}`` for every task,
Hugging Face Inference API style. Model names are the bundle folders' names. Each model runs on its
own threads behind a bounded queue (503 + Retry-After beyond it). Starlette, uvicorn and
python-multipart are imported only here, never by ``import edgetf``.
"""

from __future__ import annotations

from typing import Any

from .web import EXTRA_HINT


def require() -> None:
    """Raise ImportError naming the [serve] extra when one of its packages is missing."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{EXTRA_HINT}; missing: {', '.join(missing)}")


def create_app(models_dir: Any, **options: Any) -> Any:
    """The ASGI app (see :func:`edgetf.serve.app.create_app` for the options)."""
    require()
    from .app import create_app as build

    return build(models_dir, **options)


def serve(
    models_dir: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options: Any
) -> None:
    """Run the server in this process until interrupted."""
    require()
    import uvicorn

    uvicorn.run(create_app(models_dir, **options), host=host, port=port, log_level=log_level, timeout_keep_alive=30)
