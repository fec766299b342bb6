"""edgetf: run Hugging Face task models offline with onnxruntime, with transformers' outputs.

    import edgetf
    classify = edgetf.pipeline("text-classification", "models/distilbert-sst2")
    classify("I love this!")  # [{'label': 'POSITIVE', 'score': 0.99...}]

The runtime needs onnxruntime, numpy, tokenizers, soundfile and pillow; never torch.
"""

from __future__ import annotations

import os
from typing import Any

from . import transcripts
from .bundle import Bundle
from .errors import EdgetfError
from .session import SessionOptions, available_providers
from .tasks import check_compatible, normalize_task, pipeline_class, supported_tasks, task_from_config

__version__ = "0.1.0"
__all__ = [
    "Bundle",
    "EdgetfError",
    "SessionOptions",
    "available_providers",
    "bundle_task",
    "pipeline",
    "supported_tasks",
    "transcripts",
]


def bundle_task(bundle: Bundle) -> str | None:
    """The task a bundle was exported for: the manifest's, else what config.json implies."""
    return bundle.task or task_from_config(bundle.config, has_tokenizer=bundle.has("tokenizer.json"))


def pipeline(
    task: str | None,
    model: str | os.PathLike[str],
    *,
    dtype: str = "auto",
    device: str = "cpu",
    session_options: SessionOptions | None = None,
    verify: str = "full",
    **options: Any,
) -> Any:
    """Load a bundle folder and return the task's pipeline.

    task: a transformers task name (or alias such as "sentiment-analysis"), or None to use the
      bundle's own task.
    model: a bundle written by ``python -m export`` or an onnx-community / transformers.js folder.
    dtype: "auto" (the quantized file that passed verification, else fp32), or fp32, fp16, q8,
      int8, uint8, q4 ...
    device: cpu, cuda[:N], coreml, openvino, dml, ... (an unavailable one raises DeviceError).
    verify: "full" checks sha256 of each file used against the manifest, "size" only sizes.
    options: call-time defaults of the task (e.g. ``top_k=3``).
    """
    bundle = Bundle.open(model, verify=verify)  # type: ignore[arg-type]
    own = bundle_task(bundle)
    if task is None:
        if own is None:
            raise EdgetfError(
                f"cannot tell the task of {bundle.root}: no edgetf.json and config.json architectures "
                f"{bundle.config.get('architectures')} name none; pass task= explicitly"
            )
        resolved = normalize_task(own)
    else:
        # The manifest's task is what the bundle was exported and verified for; without one, config.json's
        # architecture is only a guess (a masked-LM checkpoint exported for feature extraction keeps
        # "BertForMaskedLM"), so the asked task is taken as it is.
        resolved = check_compatible(task, bundle.task, str(bundle.root))
    cls = pipeline_class(resolved, bundle.config)
    return cls(
        bundle,
        task=resolved,
        requested_task=task or resolved,
        dtype=dtype,
        device=device,
        session_options=session_options,
        **options,
    )
