"""Writes edgetf.json: task, source, tool versions, files with sha256 and size, recipes, parity."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from edgetf.bundle import MANIFEST, MANIFEST_FORMAT
from edgetf.hashcache import sha256_file

TOOLS = ("edgetf", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_table(bundle: Path) -> dict[str, dict[str, Any]]:
    table = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(bundle).as_posix()
        table[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return table


def write(
    bundle: Path,
    *,
    task: str,
    source: dict[str, Any],
    dtypes: dict[str, Any],
    default_dtype: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    config = json.loads((bundle / "config.json").read_text())
    manifest = {
        "format": MANIFEST_FORMAT,
        "task": task,
        "architecture": (config.get("architectures") or [None])[0],
        "model_type": config.get("model_type"),
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": tool_versions(),
        "default_dtype": default_dtype,
        "dtypes": dtypes,
        "extra": extra or {},
        "files": file_table(bundle),
    }
    path = bundle / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
