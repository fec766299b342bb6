"""The models a server offers: bundle folders under MODELS_DIR, opened once, each behind its own gate.

A model's name is its folder's name. Names are only ever looked up in the listing of MODELS_DIR
(never joined onto a path), so a request cannot make the server open anything outside it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import Bundle, bundle_task, pipeline
from ..errors import BundleError, EdgetfError
from .errors import ApiError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


@dataclass(frozen=True)
class Limits:
    """Per model: ``concurrency`` calls run at once, ``queue`` more wait, further ones get 503.
    ``timeout_s``: a request waits at most this long for its answer (504 after)."""

    concurrency: int = 1
    queue: int = 8
    timeout_s: float = 300.0
    retry_after_s: int = 1


class Gate:
    """Admission and threads of one model: a pool of ``concurrency`` threads and a bounded wait queue.

    A slot is held from admission until the work's thread finishes (even when the request timed
    out), so the count of threads busy or queued for a model never exceeds ``concurrency + queue``.
    """

    def __init__(self, name: str, limits: Limits):
        self.name = name
        self.limits = limits
        self.capacity = limits.concurrency + limits.queue
        self.admitted = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix=f"edgetf-{name}")

    def admit(self) -> None:
        with self._lock:
            if self.admitted >= self.capacity:
                raise ApiError(
                    503,
                    f"model {self.name!r} is busy ({self.limits.concurrency} running, {self.limits.queue} queued); "
                    f"retry after {self.limits.retry_after_s} s",
                    kind="server_busy",
                    headers={"Retry-After": str(self.limits.retry_after_s)},
                )
            self.admitted += 1

    def release(self) -> None:
        with self._lock:
            self.admitted -= 1

    async def run(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on this model's threads (503 when full, 504 after the time limit)."""
        self.admit()

        def held() -> Any:
            try:
                return work()
            finally:
                self.release()

        future = asyncio.get_running_loop().run_in_executor(self._pool, held)
        future.add_done_callback(_consume)  # a request cancelled or timed out leaves it running to its end
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"model {self.name!r} did not answer within {self.limits.timeout_s:g} s", kind="timeout"
            ) from None

    def submit(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        """Start ``work`` on this model's threads, already admitted with :meth:`admit`; releases when done."""

        def held() -> Any:
            try:
                return work()
            finally:
                self.release()

        return asyncio.get_running_loop().run_in_executor(self._pool, held)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


def sentence_pooling(root: Path) -> str:
    """How a bundle's sentence embeddings pool: its sentence-transformers Pooling config ("cls" or
    "mean"), found through modules.json or at 1_Pooling/config.json; "mean" when it has none."""
    folder = "1_Pooling"
    modules_file = root / "modules.json"
    if modules_file.is_file():
        try:
            modules = json.loads(modules_file.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{modules_file} is not readable JSON: {exc}") from exc
        for module in modules if isinstance(modules, list) else []:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
                folder = str(module.get("path", folder))
    config_file = (root / folder / "config.json").resolve()
    if not config_file.is_relative_to(root.resolve()) or not config_file.is_file():
        return "mean"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{config_file} is not readable JSON: {exc}") from exc
    chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
    others = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in POOLING_MODES)
    if others or len(chosen) != 1:
        raise BundleError(
            f"{config_file} asks for pooling {others or chosen or 'none'}; edgetf pools with exactly one of "
            f"{sorted(POOLING_MODES)}"
        )
    return chosen[0]


class ModelStore:
    """Bundle folders under ``root`` by name; each opened once (on first use) and shared across requests."""

    def __init__(self, root: str | Path, *, limits: Limits | None = None, **pipeline_options: Any):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise BundleError(f"models folder {str(root)!r} does not exist or is not a folder")
        self.limits = limits or Limits()
        self.pipeline_options = pipeline_options
        self._lock = threading.Lock()
        self._folders: dict[str, Path] = {}
        self._tasks: dict[str, str | None] = {}
        self._pipes: dict[str, Any] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._gates: dict[str, Gate] = {}
        self.scan()

    def scan(self) -> None:
        """List the bundle folders (a folder with config.json, under a plain name) again."""
        found = {
            entry.name: entry
            for entry in sorted(self.root.iterdir())
            if NAME.fullmatch(entry.name) and entry.is_dir() and (entry / "config.json").is_file()
        }
        with self._lock:
            self._folders = found

    def names(self) -> list[str]:
        return sorted(self._folders)

    def folder(self, name: Any) -> Path:
        """The bundle folder of a served model; 404 naming the served ones otherwise."""
        if isinstance(name, str) and NAME.fullmatch(name) and name not in self._folders:
            self.scan()  # a bundle copied in since the start
        if not isinstance(name, str) or name not in self._folders:
            shown = repr(name) if isinstance(name, str) else f"of type {type(name).__name__}"
            raise ApiError(
                404,
                f"model {shown[:140]} is not served here; served models: {', '.join(self.names()) or '(none)'}",
                kind="model_not_found",
                param="model",
            )
        return self._folders[name]

    def task(self, name: str) -> str | None:
        """The bundle's task (from edgetf.json or config.json), without opening its sessions."""
        folder = self.folder(name)
        if name not in self._tasks:
            try:
                self._tasks[name] = bundle_task(Bundle.open(folder, verify="size"))
            except EdgetfError:
                self._tasks[name] = None
        return self._tasks[name]

    def gate(self, name: str) -> Gate:
        self.folder(name)
        with self._lock:
            if name not in self._gates:
                self._gates[name] = Gate(name, self.limits)
            return self._gates[name]

    def pipeline(self, name: str) -> Any:
        """The model's pipeline, opened on first use (blocking: call it from the model's thread)."""
        folder = self.folder(name)
        with self._lock:
            lock = self._loading.setdefault(name, threading.Lock())
        with lock:
            if name not in self._pipes:
                self._pipes[name] = pipeline(None, folder, **self.pipeline_options)
            return self._pipes[name]

    async def call(self, name: str, work: Callable[[Any], Any]) -> Any:
        """``work(pipeline)`` on the model's threads, its errors as HTTP errors (the pipeline's message)."""
        self.folder(name)
        return await self.gate(name).run(lambda: self.guarded(name, work))

    def guarded(self, name: str, work: Callable[[Any], Any]) -> Any:
        """``work(pipeline)`` (blocking), with input errors as 422 and bundle/runtime failures as 500."""
        try:
            return work(self.pipeline(name))
        except ApiError:
            raise
        except ValueError as exc:  # InvalidInputError and the other input errors edgetf raises are ValueErrors
            raise ApiError(422, str(exc)) from None
        except EdgetfError as exc:
            raise ApiError(500, f"model {name!r}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        for gate in self._gates.values():
            gate.close()
