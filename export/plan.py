"""What exporting one checkpoint for one task means: its family row, optimum task, ONNX components,
quantization specifics and exporter arguments — decided from the checkpoint's own ``config.json``.

Everything here is looked up in the family table (edgetf/families.py); a catalog entry adds nothing
to it. Problems a user can fix (no config, no weights, a task the architecture cannot serve, an
architecture optimum cannot export) raise :class:`UnsupportedExport` with a one-line message that says
what is accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetf.families import Family, describe, families_for_task, family_for

from .onnx_configs import ONNX_CONFIGS, custom_configs, traced_size
from .tasks import exportable_tasks, task_export

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class UnsupportedExport(ValueError):
    """The checkpoint cannot be exported for the task; the message says why and what is accepted."""


@dataclass(frozen=True)
class ExportPlan:
    task: str
    family: Family
    model_type: str
    optimum_task: str
    components: tuple[str, ...]
    quantize: dict[str, Any] = field(default_factory=dict)
    export_kwargs: dict[str, Any] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The plan as the manifest records it."""
        return {
            "family": self.family.name,
            "model_type": self.model_type,
            "layout": self.family.layout,
            "components": list(self.components),
            "optimum_task": self.optimum_task,
            "in_family_table": self.family.known,
        }


def read_config(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        raise UnsupportedExport(f"{checkpoint}: no config.json; expected a transformers checkpoint folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedExport(f"{path}: not readable JSON ({exc})") from exc


def check_weights(checkpoint: Path) -> None:
    if not any((Path(checkpoint) / name).is_file() for name in WEIGHT_FILES):
        raise UnsupportedExport(
            f"{checkpoint}: has config.json but no weights; expected one of {', '.join(WEIGHT_FILES)} "
            "(save the model with save_pretrained)"
        )


def supported_optimum_tasks(model_type: str) -> list[str] | None:
    """The optimum tasks optimum-onnx can export ``model_type`` for (None: it has no ONNX config)."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    try:
        return sorted(TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers"))
    except KeyError:
        return None


def make_plan(checkpoint: Path, task: str) -> ExportPlan:
    """The export plan for ``checkpoint`` and ``task``; raises UnsupportedExport (one line) when there is none."""
    if task not in exportable_tasks():
        raise UnsupportedExport(f"export does not support task {task!r}; supported: {', '.join(exportable_tasks())}")
    config = read_config(checkpoint)
    check_weights(checkpoint)
    family = family_for(config, task)
    model_type = str(config.get("model_type") or "")
    serving = families_for_task(task)
    if family.known and task not in family.tasks:
        raise UnsupportedExport(
            f"{checkpoint}: a {model_type!r} checkpoint cannot be exported for {task!r}; its family "
            f"({family.name}) serves {', '.join(family.tasks)}. {task} exports from: {describe(serving)}"
        )
    spec = task_export(task)
    optimum_task = family.optimum_tasks.get(task) or spec.optimum_task
    if family.generative and not optimum_task.endswith("-with-past"):
        optimum_task += "-with-past"
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if family.onnx_config:
        model_config = _model_config(checkpoint)
        config = ONNX_CONFIGS[family.onnx_config](model_config, spec.optimum_task)
        kwargs["custom_onnx_configs"] = custom_configs(config, family.layout)
        kwargs["library_name"] = "transformers"
        if family.word_alignment:  # the decoder's cross-attention weights become graph outputs
            kwargs["model_kwargs"] = {"output_attentions": True}
            extra["word_timestamps"] = {"decoder_outputs": "cross_attentions.{layer}"}
    else:
        supported = supported_optimum_tasks(model_type)
        if supported is None or optimum_task not in supported:
            can = f"it exports {model_type!r} for {', '.join(supported)}" if supported else f"it has no {model_type!r}"
            raise UnsupportedExport(
                f"{checkpoint}: optimum-onnx cannot export a {model_type!r} checkpoint for {task!r} ({can}). "
                f"{task} exports from: {describe(serving)}"
            )
    if family.static_image_size:
        height, width = traced_size(checkpoint)
        kwargs.update(height=height, width=width)
        extra.update(image_size={"height": height, "width": width}, static_image_size=True)
    return ExportPlan(
        task=task,
        family=family,
        model_type=model_type,
        optimum_task=optimum_task,
        components=family.components,
        quantize=dict(family.quantize),
        export_kwargs=kwargs,
        manifest_extra=extra,
    )


def _model_config(checkpoint: Path) -> Any:
    import transformers

    return transformers.AutoConfig.from_pretrained(str(checkpoint))
