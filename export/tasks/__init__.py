"""Per-task export knowledge: optimum task, built-in parity inputs, parity check.

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
    """A task's export knowledge: optimum's task name, the parity check, its built-in inputs.

    What depends on the architecture (``-with-past``, components, quantization) is in the family
    table (edgetf/families.py), not here."""

    task: str
    optimum_task: str
    check: Callable[[CheckContext], dict[str, Any]]
    build_tiny: Callable[[Entry, Path, int], Path] | None = None
    # Built-in input set of export/inputs.py the check runs (None: the check makes its own signals).
    parity_inputs: str | None = None


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
