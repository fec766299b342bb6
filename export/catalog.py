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


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    source: str
    dtypes: tuple[str, ...] = ("fp32", "q8")
    parity: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    quantize: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def parity_inputs(self) -> list[str]:
        """The entry's text inputs with "@long:N" expanded; [] for entries whose checks make their own."""
        ref = self.parity.get("inputs")
        items = self.inputs.get(ref, []) if isinstance(ref, str) else list(ref or [])
        return [expand_input(x) for x in items]


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


def load_inputs(path: Path = CATALOG) -> dict[str, list[str]]:
    """The named parity input sets of the catalog's [inputs] table."""
    return _read(path).get("inputs", {})


def load(path: Path = CATALOG) -> list[Entry]:
    data = _read(path)
    inputs = data.get("inputs", {})
    entries = []
    for raw in data.get("model", []):
        unknown = set(raw) - {"name", "task", "source", "dtypes", "parity", "tiny", "export", "quantize"}
        if unknown:
            raise ValueError(f"{path}: entry {raw.get('name')!r} has unknown keys {sorted(unknown)}")
        entries.append(
            Entry(
                name=raw["name"],
                task=raw["task"],
                source=raw["source"],
                dtypes=tuple(raw.get("dtypes", ("fp32", "q8"))),
                parity=raw.get("parity", {}),
                tiny=raw.get("tiny", {}),
                export=raw.get("export", {}),
                quantize=raw.get("quantize", {}),
                inputs=inputs,
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
