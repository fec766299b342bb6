"""Calibration feeds for static quantization (the ``conv-static`` level of export/quantize.py).

The fp32 bundle's own edgetf pipeline runs on an even spread of the built-in inputs of export/inputs.py
(50 images, 50 audio signals), so calibration sees exactly the pixel values / waveforms the runtime's
preprocessing makes; the feeds of each session are recorded per component. Deterministic: the same
inputs in the same order give the same feeds, hence the same ranges and the same bundle bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import inputs
from .tasks.common import record_feeds

COUNT = {"tiny": 8, "full": 32}  # inputs per calibration pass (tiny builds: a handful, CI runs them all)
IMAGE_TASKS = ("object-detection", "image-segmentation", "depth-estimation", "image-classification")
AUDIO_TASKS = ("automatic-speech-recognition", "audio-classification")


def samples(task: str, count: int) -> list[Any]:
    """``count`` built-in inputs for ``task``, spread evenly over the set (its kinds, sizes and modes)."""
    if task in IMAGE_TASKS:
        items = [image for _, image in inputs.images()]
    elif task in AUDIO_TASKS:
        items = list(inputs.signals().values())
    else:
        raise ValueError(
            f"no calibration inputs for task {task!r}; static quantization calibrates "
            f"{', '.join(IMAGE_TASKS + AUDIO_TASKS)}"
        )
    step = max(1, len(items) // count)
    return items[::step][:count]


def record(task: str, bundle: Path, count: int) -> dict[str, list[dict[str, Any]]]:
    """Per component, the feeds the fp32 edgetf pipeline of ``bundle`` runs on ``count`` built-in inputs."""
    import edgetf

    pipe = edgetf.pipeline(task, bundle, dtype="fp32", verify="none")
    store: dict[str, list[dict[str, Any]]] = {}
    record_feeds(pipe, store)
    for sample in samples(task, count):
        pipe(sample.copy() if hasattr(sample, "dtype") else sample)
    return store
