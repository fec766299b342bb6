"""edgetf.ray: a pipeline over a Ray Dataset, on one machine or a cluster (the ``[ray]`` extra).

    import ray
    import edgetf.ray

    ds = ray.data.from_items([{"inputs": text} for text in texts])
    out = ds.map_batches(
        edgetf.ray.Predictor,
        fn_constructor_kwargs={"task": "text-classification", "model": "/models/distilbert-sst2"},
        compute=ray.data.ActorPoolStrategy(size=4),  # workers (actors); each opens the bundle once
        batch_size=64,  # rows per call
        num_cpus=1,  # CPUs reserved per worker
    )

The bundle path must be readable on every node (a shared folder, or copied to the same path).
:class:`Predictor` itself needs nothing from Ray: it is a plain callable class over dict-of-arrays
or pandas batches, so it also serves ``multiprocessing`` or Dask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import pipeline
from .batch import outputs_for
from .jsonable import to_json_value

EXTRA_HINT = "Ray Data is not installed: pip install 'edgetf[ray]' (ray[data])"


def plain(value: Any) -> Any:
    """A column cell as a pipeline input: numpy strings/bytes/scalars as Python ones, arrays as they are."""
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.bytes_):
        return bytes(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class Predictor:
    """A callable class for ``Dataset.map_batches``: reads the column ``input_column`` (default
    ``inputs``) and adds ``output_column`` (default ``outputs``), one output per row, shaped as an
    element of the pipeline's output for a list (numpy arrays as lists; ``as_json=True`` stores JSON
    strings instead, for outputs whose structure varies between rows).

    task, model: as :func:`edgetf.pipeline`; ``pipeline_options`` (dtype, device, session_options,
    and call-time defaults such as ``top_k``) go to it too. The pipeline is opened once, when Ray
    constructs the worker. ``pipeline_batch_size``: inputs per model run inside one batch.
    """

    def __init__(
        self,
        task: str | None,
        model: str,
        *,
        input_column: str = "inputs",
        output_column: str = "outputs",
        pipeline_batch_size: int = 8,
        as_json: bool = False,
        **pipeline_options: Any,
    ):
        self.pipe = pipeline(task, model, **pipeline_options)
        self.input_column = input_column
        self.output_column = output_column
        self.pipeline_batch_size = pipeline_batch_size
        self.as_json = as_json

    def predict(self, values: list[Any]) -> list[Any]:
        if not values:
            return []
        outputs = outputs_for(self.pipe, values, {}, self.pipeline_batch_size)
        if self.as_json:
            import json

            return [json.dumps(to_json_value(o), ensure_ascii=False) for o in outputs]
        return [to_json_value(o) for o in outputs]

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, Mapping):  # batch_format="numpy" (Ray's default): column -> array
            if self.input_column not in batch:
                raise KeyError(f"the batch has no column {self.input_column!r}; columns: {sorted(batch)}")
            outputs = self.predict([plain(v) for v in batch[self.input_column]])
            column = np.empty(len(outputs), dtype=object)  # filled one by one: rows may be lists
            for i, output in enumerate(outputs):
                column[i] = output
            return {**batch, self.output_column: column}
        if hasattr(batch, "assign") and hasattr(batch, "columns"):  # batch_format="pandas"
            outputs = self.predict([plain(v) for v in batch[self.input_column].tolist()])
            return batch.assign(**{self.output_column: outputs})
        raise TypeError(f"Predictor takes numpy (dict of arrays) or pandas batches, got {type(batch).__name__}")


def require() -> None:
    """Raise ImportError naming the [ray] extra when Ray Data is missing."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(EXTRA_HINT) from exc
