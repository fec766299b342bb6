"""Per-task export knowledge: optimum task, ONNX components, quantization defaults, parity check.

Each family module in this package registers ``TaskExport`` objects with :func:`register`;
every module here is imported on first use, so adding a family is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import Entry


@dataclass
class CheckContext:
    """What a parity check gets: the entry, the reference checkpoint and the bundle, one dtype."""

    entry: Entry
    checkpoint: Path
    bundle: Path
    dtype: str
    inputs: list[Any]
    reference_cache: dict[str, Any] = field(default_factory=dict)  # shared across dtypes of one entry


@dataclass(frozen=True)
class TaskExport:
    task: str
    optimum_task: str
    check: Callable[[CheckContext], dict[str, Any]]
    components: tuple[str, ...] = ("model",)
    quant_ops: tuple[str, ...] = ("MatMul",)
    export_kwargs: Callable[[Entry, Path], dict[str, Any]] | None = None
    build_tiny: Callable[[Entry, Path, int], Path] | None = None
    # Named [inputs] set used when a checkpoint outside the catalog is exported (None: the check makes its own).
    parity_inputs: str | None = None
    # Bundle facts the runtime needs (e.g. traced image size), from the checkpoint dir.
    manifest_extra: Callable[[Entry, Path], dict[str, Any]] | None = None


_REGISTRY: dict[str, TaskExport] = {}
_loaded = False


def register(*exports: TaskExport) -> None:
    for item in exports:
        _REGISTRY[item.task] = item


def _load() -> None:
    global _loaded
    if not _loaded:
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True


def task_export(task: str) -> TaskExport:
    _load()
    if task not in _REGISTRY:
        raise KeyError(f"export does not support task {task!r} yet; supported: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[task]


def exportable_tasks() -> list[str]:
    _load()
    return sorted(_REGISTRY)
