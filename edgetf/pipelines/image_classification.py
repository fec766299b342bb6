"""image-classification: same inputs, options and outputs as transformers' ImageClassificationPipeline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from .image_base import ImagePipeline, as_items
from .text_classification import FUNCTIONS, apply_function, label_map, rank_labels


def default_function(config: dict[str, Any]) -> str:
    """The function transformers' image pipeline applies when none is given."""
    problem = config.get("problem_type")
    num_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    if problem == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or num_labels > 1:
        return "softmax"
    return str(config.get("function_to_apply", "none")).lower()


class ImageClassificationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{label, score}, ...]`` best first; ``pipe([a, b])`` -> one such list per image.

    An image is a file path, raw bytes, a base64 string, a PIL image or a numpy HWC array.
    ``top_k`` (default 5, capped at the number of labels; None means the default, as in transformers)
    and ``function_to_apply`` ("softmax", "sigmoid", "none"; default from the config) as the reference.
    """

    options_accepted: ClassVar[dict[str, Any]] = {"top_k": 5, "function_to_apply": None, "batch_size": 1}

    def setup(self) -> None:
        super().setup()
        self.id2label = label_map(self.bundle.config)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        top_k = 5 if opts["top_k"] is None else opts["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise InvalidInputError(f"top_k must be an integer >= 0 (or None for 5), got {top_k!r}")
        top_k = min(top_k, len(self.id2label))
        function = opts["function_to_apply"]
        function = default_function(self.bundle.config) if function is None else str(function).lower()
        if function not in FUNCTIONS:
            raise InvalidInputError(f"function_to_apply={function!r} is not accepted; use one of {FUNCTIONS}")
        items, single = as_items(inputs, self.task)
        results = [
            rank_labels(apply_function(row.astype(np.float32), function), self.id2label, top_k)
            for row in self.logits(items, batch_size=opts["batch_size"])
        ]
        return results[0] if single else results

    def logits(self, items: list[Any], batch_size: int = 1) -> np.ndarray:
        """Raw logits (n, num_labels) for a list of images."""
        session = self.session()
        out = [session.run(chunk.feeds)["logits"] for chunk in self.chunks(items, batch_size)]
        return np.concatenate(out, axis=0) if out else np.zeros((0, len(self.id2label)), np.float32)
