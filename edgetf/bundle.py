"""Read a bundle folder: configs, the ONNX file of each dtype, the manifest and its checksums.

A bundle has the onnx-community / transformers.js layout::

    config.json, tokenizer.json, preprocessor_config.json, generation_config.json, ...
    onnx/<component><suffix>.onnx      e.g. onnx/model_quantized.onnx, onnx/encoder_model.onnx
    onnx/<component><suffix>.onnx_data its weights (optional; memory-mapped by onnxruntime)
    edgetf.json                         manifest written by ``python -m export`` (optional)

A folder without ``edgetf.json`` still loads: the task comes from ``config.json`` and no
checksums are checked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import BundleError, DtypeError, IntegrityError
from .hashcache import file_sha256

MANIFEST = "edgetf.json"
MANIFEST_FORMAT = 1

# transformers.js naming: dtype -> file-name suffix of onnx/<component><suffix>.onnx
DTYPE_SUFFIX: dict[str, str] = {
    "fp32": "",
    "fp16": "_fp16",
    "q8": "_quantized",
    "int8": "_int8",
    "uint8": "_uint8",
    "q4": "_q4",
    "q4f16": "_q4f16",
    "bnb4": "_bnb4",
    "qdq": "_qdq",  # edgetf: static int8 QDQ MatMuls, for the OpenVINO engine (export/quantize.py)
}
# "auto" without a manifest: the first dtype present in this order.
_AUTO_ORDER = ("fp32", "q8", "int8", "uint8", "fp16", "q4", "q4f16", "bnb4", "qdq")

Verify = Literal["full", "size", "none"]


def onnx_filename(component: str, dtype: str) -> str:
    """``onnx/<component><suffix>.onnx`` for a dtype name (raises DtypeError if unknown)."""
    if dtype not in DTYPE_SUFFIX:
        raise DtypeError(f"unknown dtype {dtype!r}; accepted: 'auto', {', '.join(map(repr, DTYPE_SUFFIX))}")
    return f"onnx/{component}{DTYPE_SUFFIX[dtype]}.onnx"


def _safe_relative(root: Path, rel: str) -> Path:
    """Resolve a manifest path inside the bundle; refuse absolute paths and ``..`` escapes."""
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        raise IntegrityError(f"{MANIFEST} lists {rel!r}, which points outside the bundle {root}")
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise IntegrityError(f"{MANIFEST} lists {rel!r}, which resolves outside the bundle {root}")
    return path


@dataclass
class Bundle:
    """An opened bundle folder. Use :meth:`open`."""

    root: Path
    config: dict[str, Any]
    manifest: dict[str, Any] | None
    verify: Verify = "full"
    _verified: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: Verify = "full") -> Bundle:
        """Open a bundle folder; checks every manifest file's size now, its sha256 when first used.

        ``verify``: "full" (size now, sha256 on first use), "size" (sizes only, for very large
        files), "none" (no checks).
        """
        if verify not in ("full", "size", "none"):
            raise ValueError(f"verify={verify!r} is not accepted; use 'full', 'size' or 'none'")
        root = Path(path).expanduser()
        if not root.is_dir():
            raise BundleError(
                f"bundle folder {str(root)!r} does not exist or is not a folder; "
                "pass a folder written by `python -m export` or an onnx-community model folder"
            )
        manifest = _read_json(root / MANIFEST, "manifest") if (root / MANIFEST).is_file() else None
        if manifest is not None and not isinstance(manifest.get("files"), dict):
            raise IntegrityError(f"{root / MANIFEST} has no 'files' table; re-export the bundle")
        config_path = root / "config.json"
        if not config_path.is_file():
            raise BundleError(f"{root} has no config.json; a bundle needs the model's config.json at its root")
        bundle = cls(root=root, config={}, manifest=manifest, verify=verify)
        if manifest is not None and verify != "none":
            for rel, meta in manifest["files"].items():
                bundle._check_size(rel, meta)
        bundle.config = bundle.read_json("config.json")
        return bundle

    # -- files -------------------------------------------------------------------------------
    def file(self, rel: str) -> Path:
        """Path of a bundle file, checked against the manifest (size, and sha256 once)."""
        path = _safe_relative(self.root, rel)
        if not path.is_file():
            raise BundleError(f"bundle {self.root} is missing {rel}")
        meta = (self.manifest or {}).get("files", {}).get(rel)
        if meta is not None and self.verify != "none" and rel not in self._verified:
            self._check_size(rel, meta)
            if self.verify == "full":
                actual = file_sha256(path)
                if actual != meta.get("sha256"):
                    raise IntegrityError(
                        f"{rel} in {self.root} does not match {MANIFEST}: sha256 {actual[:12]}... "
                        f"!= recorded {str(meta.get('sha256'))[:12]}...; the file was changed or corrupted, "
                        "re-export the bundle (or open with verify='none' at your own risk)"
                    )
            self._verified.add(rel)
        return path

    def has(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def read_json(self, rel: str) -> dict[str, Any]:
        return _read_json(self.file(rel), rel)

    def read_json_optional(self, rel: str) -> dict[str, Any] | None:
        return self.read_json(rel) if self.has(rel) else None

    def _check_size(self, rel: str, meta: Any) -> None:
        path = _safe_relative(self.root, rel)
        if not isinstance(meta, dict) or not isinstance(meta.get("size"), int):
            raise IntegrityError(f"{MANIFEST} entry for {rel!r} has no integer size")
        if not path.is_file():
            raise IntegrityError(f"bundle {self.root} is missing {rel}, which {MANIFEST} lists")
        size = path.stat().st_size
        if size != meta["size"]:
            raise IntegrityError(
                f"{rel} in {self.root} is {size} bytes but {MANIFEST} records {meta['size']}; "
                "the file is truncated or was replaced: re-export the bundle"
            )

    # -- metadata ----------------------------------------------------------------------------
    @property
    def task(self) -> str | None:
        """Task recorded in the manifest, else None (see edgetf.tasks.task_from_config)."""
        return (self.manifest or {}).get("task")

    @property
    def extra(self) -> dict[str, Any]:
        """Task-specific facts recorded by export (e.g. the traced image size)."""
        return dict((self.manifest or {}).get("extra", {}))

    def dtypes(self, component: str = "model") -> list[str]:
        """dtypes that have a file for ``component``."""
        return [d for d in DTYPE_SUFFIX if self.has(onnx_filename(component, d))]

    def resolve_dtype(self, dtype: str, component: str = "model") -> str:
        """Turn "auto" into a concrete dtype; check that the bundle has a file for it."""
        available = self.dtypes(component)
        if dtype == "auto":
            preferred = (self.manifest or {}).get("default_dtype")
            if preferred in available:
                return preferred
            for candidate in _AUTO_ORDER:
                if candidate in available:
                    return candidate
            raise BundleError(f"bundle {self.root} has no onnx/{component}*.onnx file")
        onnx_filename(component, dtype)  # validates the name
        if dtype not in available:
            raise DtypeError(
                f"bundle {self.root} has no {dtype} file (onnx/{component}{DTYPE_SUFFIX[dtype]}.onnx); "
                f"available dtypes: {', '.join(available) or 'none'}"
            )
        failed = self.dtype_report(dtype).get("passed") is False
        if failed:
            import warnings

            warnings.warn(
                f"{dtype} of {self.root} failed its parity check at export time; see `python -m edgetf info`",
                stacklevel=3,
            )
        return dtype

    def dtype_report(self, dtype: str) -> dict[str, Any]:
        return dict((self.manifest or {}).get("dtypes", {}).get(dtype, {}))

    def onnx(self, component: str, dtype: str) -> Path:
        """Verified path of ``onnx/<component><suffix>.onnx`` (and of its ``.onnx_data`` weights, if any)."""
        rel = onnx_filename(component, dtype)
        if not self.has(rel):
            raise DtypeError(f"bundle {self.root} has no {rel} (dtype {dtype!r}); available: {self.dtypes(component)}")
        data, listed = rel + "_data", (self.manifest or {}).get("files", {})
        if self.manifest is not None and self.verify != "none" and self.has(data) and data not in listed:
            raise IntegrityError(
                f"{data} in {self.root} is not listed in {MANIFEST}; onnxruntime would load weights nobody "
                "verified: re-export the bundle (or open with verify='none' at your own risk)"
            )
        if self.has(data) or data in listed:
            self.file(data)  # onnxruntime memory-maps it: check it before the session opens
        return self.file(rel)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} does not hold a JSON object")
    return data
