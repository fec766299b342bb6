"""Checkpoint -> ONNX with optimum's exporter, laid out as a bundle (transformers.js layout)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .plan import ExportPlan

# Files copied from the exporter's output / the checkpoint to the bundle root.
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "added_tokens.json",
    "vocab.json",  # character vocabularies of tokenizers without a tokenizer.json (Wav2Vec2-CTC)
)


class SourceUnavailable(RuntimeError):
    """The checkpoint cannot be had (offline and not cached, or no such folder)."""


def resolve_source(source: str) -> tuple[Path, str]:
    """A local folder for ``source`` (local path, HF cache, or download) and its revision."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path, "local"
    if path.suffix or source.startswith((".", "/")) or source.count("/") > 1:
        raise SourceUnavailable(f"{source}: no such local folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(source, local_files_only=True)
        return Path(folder), Path(folder).name
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise SourceUnavailable(
            f"{source}: not reachable offline (HF_HUB_OFFLINE set); not in the local cache; use --tiny or a local path"
        )
    try:
        folder = snapshot_download(source)
    except Exception as exc:  # network, auth, missing repo: one line for the summary
        raise SourceUnavailable(
            f"{source}: not reachable offline ({type(exc).__name__}); not in the local cache; "
            "use --tiny or a local path"
        ) from exc
    return Path(folder), Path(folder).name


def export_onnx(plan: ExportPlan, checkpoint: Path, bundle: Path) -> list[Path]:
    """Export ``checkpoint`` as ``plan`` says into ``bundle`` (configs at the root, ONNX in onnx/)."""
    from optimum.exporters.onnx import main_export

    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "onnx").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgetf-export-") as tmp:
        main_export(
            str(checkpoint),
            output=tmp,
            task=plan.optimum_task,
            device="cpu",
            do_validation=False,
            local_files_only=True,
            **plan.export_kwargs,
        )
        out = Path(tmp)
        written = []
        for onnx_file in sorted(out.glob("*.onnx")):
            if onnx_file.stem not in plan.components:
                continue
            target = bundle / "onnx" / onnx_file.name
            shutil.move(str(onnx_file), target)
            data = onnx_file.with_name(onnx_file.name + "_data")
            if data.exists():
                shutil.move(str(data), bundle / "onnx" / data.name)
            written.append(target)
        for name in CONFIG_FILES:
            src = out / name if (out / name).exists() else checkpoint / name
            if src.exists():
                shutil.copy2(src, bundle / name)
    missing = set(plan.components) - {p.stem for p in written}
    if missing:
        raise RuntimeError(
            f"optimum wrote no {sorted(missing)} for a {plan.model_type!r} checkpoint (task {plan.optimum_task}); "
            f"the {plan.family.layout} layout needs {', '.join(plan.components)}"
        )
    return written
