"""text-classification: same inputs, options and outputs as transformers' TextClassificationPipeline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..batching import batched
from ..errors import InvalidInputError
from ..numeric import sigmoid, softmax
from ..text import TextTokenizer
from ..text.tokenizer import check_text
from .base import UNSET, Pipeline

FUNCTIONS = ("sigmoid", "softmax", "none")


def default_function(config: dict[str, Any]) -> str:
    """The function transformers applies when none is given (from problem_type / num_labels)."""
    problem = config.get("problem_type")
    num_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or num_labels > 1:
        return "softmax"
    return str(config.get("function_to_apply", "none")).lower()


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "softmax":
        return softmax(logits)
    if function == "none":
        return logits
    raise InvalidInputError(f"function_to_apply={function!r} is not accepted; use one of {FUNCTIONS}")


def rank_labels(scores: np.ndarray, id2label: dict[int, str], top_k: int | None) -> list[dict[str, Any]]:
    """[{label, score}] sorted by score, best first (stable, as Python's sort), cut to top_k."""
    ranked = [{"label": id2label[i], "score": float(s)} for i, s in enumerate(scores)]
    ranked.sort(key=lambda d: d["score"], reverse=True)
    return ranked if top_k is None else ranked[:top_k]


def label_map(config: dict[str, Any]) -> dict[int, str]:
    raw = config.get("id2label") or {}
    if not raw:
        n = int(config.get("num_labels", 2))
        return {i: f"LABEL_{i}" for i in range(n)}
    return {int(k): v for k, v in raw.items()}


class TextClassificationPipeline(Pipeline):
    """``pipe("text")``, ``pipe(["a", "b"])``, ``pipe({"text": a, "text_pair": b})``.

    Outputs follow transformers exactly: without ``top_k`` a single text gives ``[{label, score}]``
    and a list gives one dict per text; with ``top_k`` (an int, or None for all labels) each text
    gives a list of dicts. Over-long input is truncated to the model's maximum length by default
    (``truncation=True``); transformers would fail on it unless asked to truncate.
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "top_k": UNSET,
        "function_to_apply": None,
        "return_all_scores": None,
        "truncation": True,
        "max_length": None,
        "padding": None,
        "batch_size": 1,
    }

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.id2label = label_map(self.bundle.config)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        # transformers: postprocess is "legacy" unless top_k was given (at construction or call);
        # a single str is wrapped in a list unless top_k was given at *call* time.
        top_k, legacy = opts["top_k"], opts["top_k"] is UNSET
        wrap_single = "top_k" not in kwargs
        if legacy:
            top_k = 1
            if opts["return_all_scores"] is not None:
                top_k = None if opts["return_all_scores"] else 1
        elif top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise InvalidInputError(f"top_k must be a positive int or None, got {top_k!r}")
        function = opts["function_to_apply"]
        function = default_function(self.bundle.config) if function is None else str(function).lower()
        if function not in FUNCTIONS:
            raise InvalidInputError(f"function_to_apply={function!r} is not accepted; use one of {FUNCTIONS}")

        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else inputs
        if not isinstance(items, list):
            raise InvalidInputError(
                f"text-classification takes a str, a {{'text', 'text_pair'}} dict, or a list of those; "
                f"got {type(inputs).__name__}"
            )
        pairs = [_as_pair(item) for item in items]
        logits = self.logits(
            pairs, truncation=opts["truncation"], max_length=opts["max_length"], batch_size=opts["batch_size"]
        )
        results = []
        for row in logits:
            scores = apply_function(row.astype(np.float32), function)
            if top_k == 1 and legacy:
                best = int(scores.argmax())
                results.append({"label": self.id2label[best], "score": float(scores[best])})
            elif legacy:  # return_all_scores=True: every label, in label order
                results.append([{"label": self.id2label[i], "score": float(s)} for i, s in enumerate(scores)])
            else:
                results.append(rank_labels(scores, self.id2label, top_k))
        if single:
            return [results[0]] if isinstance(inputs, str) and wrap_single else results[0]
        return results

    def logits(
        self,
        pairs: list[tuple[str, str | None]],
        *,
        truncation: bool | str = True,
        max_length: int | None = None,
        batch_size: int = 1,
    ) -> np.ndarray:
        """Raw logits (n, num_labels) for (text, text_pair) tuples."""
        session = self.session()
        out = []
        for chunk in batched(pairs, batch_size):
            encodings = [self.tokenizer.encode(t, p, truncation=truncation, max_length=max_length) for t, p in chunk]
            feeds = self.tokenizer.arrays(encodings)
            out.append(session.run(feeds)["logits"])
        return np.concatenate(out, axis=0) if out else np.zeros((0, len(self.id2label)), np.float32)


def _as_pair(item: Any) -> tuple[str, str | None]:
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        unknown = set(item) - {"text", "text_pair"}
        if "text" not in item or unknown:
            raise InvalidInputError(
                f"a text-pair input is a dict with keys 'text' and optionally 'text_pair'; got keys {sorted(item)}"
            )
        pair = item.get("text_pair")
        return check_text(item["text"], "text"), None if pair is None else check_text(pair, "text_pair")
    if isinstance(item, (list, tuple)):
        raise InvalidInputError(
            "text-classification received a list inside the input list; to send a text pair, send a dict "
            '{"text": "My text", "text_pair": "My pair"}'
        )
    raise InvalidInputError(
        f"text-classification takes a str or a {{'text', 'text_pair'}} dict per input; got {type(item).__name__}"
    )
