"""Reads models/catalog.toml: one entry per model `python -m export all` produces."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "models" / "catalog.toml"
CORPUS = Path(__file__).resolve().parent / "data" / "corpus.txt"


# What an entry's ``parity`` table may hold: extra verification inputs and a wider fp32 tolerance. The
# quantized gates (agreement, cosine, IoU ...) are per task in export/gates.py, never per entry.
PARITY_KEYS = frozenset({"inputs", "fp32_tolerance", "max_relative_error"})


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    source: str
    dtypes: tuple[str, ...] = ("fp32", "q8")
    parity: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)

    def parity_inputs(self, builtin: list[str]) -> list[str]:
        """The task's built-in inputs plus the entry's own (``parity.inputs``; "@long:N" expanded)."""
        extra = [expand_input(x) for x in self.parity.get("inputs", ())]
        return list(dict.fromkeys([*builtin, *extra]))


def expand_input(item: str) -> str:
    if item.startswith("@long:"):
        return long_text(int(item.split(":", 1)[1]))
    return item


def long_text(n_chars: int) -> str:
    """A deterministic text of exactly ``n_chars`` characters made from the corpus."""
    corpus = CORPUS.read_text(encoding="utf-8").split("\n")
    text, i = "", 0
    while len(text) < n_chars:
        text += corpus[i % len(corpus)] + " "
        i += 1
    return text[:n_chars]


def _read(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def load(path: Path = CATALOG) -> list[Entry]:
    data = _read(path)
    entries = []
    for raw in data.get("model", []):
        unknown = set(raw) - {"name", "task", "source", "dtypes", "parity", "tiny"}
        if unknown:
            raise ValueError(
                f"{path}: entry {raw.get('name')!r} has unknown keys {sorted(unknown)}; an entry names name, task, "
                "source, dtypes, parity (extra inputs, fp32 tolerance) and tiny (its recipe); export and quantization "
                "knowledge is per family in edgetf/families.py"
            )
        parity_unknown = set(raw.get("parity", {})) - PARITY_KEYS
        if parity_unknown:
            raise ValueError(
                f"{path}: entry {raw.get('name')!r} has unknown parity keys {sorted(parity_unknown)}; accepted: "
                f"{', '.join(sorted(PARITY_KEYS))}. Quantized-dtype thresholds are per task in export/gates.py"
            )
        entries.append(
            Entry(
                name=raw["name"],
                task=raw["task"],
                source=raw["source"],
                dtypes=tuple(raw.get("dtypes", ("fp32", "q8"))),
                parity=raw.get("parity", {}),
                tiny=raw.get("tiny", {}),
            )
        )
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate entry names")
    return entries


def get(name: str, path: Path = CATALOG) -> Entry:
    for entry in load(path):
        if entry.name == name:
            return entry
    raise KeyError(f"no catalog entry named {name!r}; known: {', '.join(e.name for e in load(path))}")
