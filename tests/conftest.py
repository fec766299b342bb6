"""Shared fixtures: tiny random-weight bundles built once per session with the real export code.

``tiny.get(name)`` exports the catalog entry ``name`` from its tiny recipe (random weights,
locally trained tokenizer) and returns the bundle and the checkpoint it came from, which is
the reference for parity. Set EDGETF_TEST_MODELS=/some/dir to keep bundles between runs
(rebuilt when the entry or the export code changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# verified-hash cache (edgetf/hashcache.py) of this run only: tests never write to ~/.cache
os.environ.setdefault("EDGETF_CACHE_DIR", tempfile.mkdtemp(prefix="edgetf-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# CI replays one fixed set of fuzz examples (a red CI run must reproduce); local runs explore new ones.
# (The aarch64 runtime check runs without hypothesis installed.)
try:
    from hypothesis import settings
except ImportError:
    settings = None
if settings is not None:
    settings.register_profile("ci", derandomize=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Built:
    name: str
    bundle: Path
    checkpoint: Path
    manifest: dict[str, Any]


def _fingerprint(entry: Any) -> str:
    digest = hashlib.sha256(repr(entry).encode())
    for folder in ("export", "edgetf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TinyBundles:
    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, Built] = {}

    def get(self, name: str, dtypes: tuple[str, ...] | None = None) -> Built:
        """The tiny bundle of catalog entry ``name``; ``dtypes`` other than the catalog's are built in a
        folder of their own (``<root>/dtypes-fp32+qdq/<name>``)."""
        key = name if dtypes is None else f"{name}:{'+'.join(dtypes)}"
        if key not in self._built:
            from dataclasses import replace

            from export import catalog
            from export.build import checkpoint_dir, export_entry

            entry = catalog.get(name)
            root = self.root
            if dtypes is not None:
                entry, root = replace(entry, dtypes=tuple(dtypes)), self.root / f"dtypes-{'+'.join(dtypes)}"
            stamp = root / name / ".fingerprint"
            fingerprint = _fingerprint(entry)
            if not (stamp.is_file() and stamp.read_text() == fingerprint):
                result = export_entry(entry, root, tiny_model=True, log=lambda _msg: None)
                stamp.write_text(fingerprint)
                assert result.status == "ok", f"tiny export of {name} failed: {result.detail}"
            bundle = root / name
            manifest = json.loads((bundle / "edgetf.json").read_text())
            self._built[key] = Built(name, bundle, checkpoint_dir(root, name), manifest)
        return self._built[key]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyBundles:
    keep = os.environ.get("EDGETF_TEST_MODELS")
    root = Path(keep) if keep else tmp_path_factory.mktemp("models")
    root.mkdir(parents=True, exist_ok=True)
    return TinyBundles(root)


_REFERENCES: dict[tuple[str, str, str], Any] = {}


@pytest.fixture(scope="session")
def reference():
    """reference(task, built, **kwargs): a transformers pipeline on the tiny checkpoint (cached)."""

    def make(task: str, built: Built, **kwargs: Any) -> Any:
        key = (task, str(built.checkpoint), repr(sorted(kwargs.items())))
        if key not in _REFERENCES:
            import transformers

            _REFERENCES[key] = transformers.pipeline(task, model=str(built.checkpoint), device="cpu", **kwargs)
        return _REFERENCES[key]

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Reference pipelines on one torch thread: on a busy 2-core machine torch's spinning workers make
    transformers ~20x slower (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
