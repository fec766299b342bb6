"""audio-classification: transformers' AudioClassificationPipeline (Wav2Vec2, HuBERT, ... sequence classifiers).

``pipe(audio)`` -> ``[{"score", "label"}, ...]`` best first, ``top_k`` labels (never more than the model
has); ``function_to_apply``: "softmax" (default), "sigmoid" or "none". Without ``top_k`` at call time
transformers returns every label (its construction-time default of 5 is overridden by the call's own
parameter handling); edgetf does the same, but honours a ``top_k`` given when the pipeline is built.
A list of inputs gives a list of such lists. Audio inputs are those of :func:`edgetf.audio.load_audio`
(path, bytes, array, or {"raw"/"array", "sampling_rate"} dict); unlike transformers, 2-D (stereo)
arrays are averaged to mono instead of rejected.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..audio.features import Wav2Vec2Features, check_min_samples, check_one_pass_fits, conv_min_samples
from ..audio.io import load_audio, tone
from ..errors import BundleError, InvalidInputError
from ..numeric import sigmoid, softmax
from .base import Pipeline
from .text_classification import label_map

FUNCTIONS = ("softmax", "sigmoid", "none")


class AudioClassificationPipeline(Pipeline):
    options_accepted: ClassVar[dict[str, Any]] = {"top_k": None, "function_to_apply": None, "batch_size": 1}

    def setup(self) -> None:
        pre = self.bundle.read_json_optional("preprocessor_config.json")
        if pre is None:
            raise BundleError(f"bundle {self.bundle.root} has no preprocessor_config.json (the feature extractor)")
        self.extractor = Wav2Vec2Features.from_config(pre)
        self.sampling_rate = self.extractor.sampling_rate
        self.id2label = label_map(self.bundle.config)
        self.min_samples = conv_min_samples(self.bundle.config)

    def demo_input(self) -> Any:
        return tone(2.0, self.sampling_rate)

    def cli_inputs(self, args: list[str]) -> Any:
        return args[0] if len(args) == 1 else list(args)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        top_k = opts["top_k"]
        n_labels = len(self.id2label)
        if top_k is None:
            top_k = n_labels
        elif not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InvalidInputError(f"top_k must be a positive int or None, got {top_k!r}")
        top_k = min(top_k, n_labels)
        function = opts["function_to_apply"] or "softmax"
        if function not in FUNCTIONS:
            raise InvalidInputError(f"function_to_apply={function!r} is not accepted; use one of {list(FUNCTIONS)}")
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        if not items:
            raise InvalidInputError("audio-classification got an empty list of inputs")
        results = [self._rank(row, function, top_k) for row in self.logits(items)]
        return results[0] if single else results

    def logits(self, items: list[Any]) -> np.ndarray:
        """(n, num_labels) logits; each input runs on its own (no padding between inputs)."""
        session = self.session()
        rows = []
        for item in items:
            audio = load_audio(item, self.sampling_rate)
            check_min_samples(audio.samples, self.min_samples, self.sampling_rate)
            check_one_pass_fits(audio.samples, self.bundle.config, self.sampling_rate, "classify a shorter excerpt")
            values = self.extractor(audio.samples)[None]
            feeds = {"input_values": values, "attention_mask": np.ones(values.shape, dtype=np.int64)}
            rows.append(session.run(feeds, ["logits"])["logits"][0])
        return np.stack(rows).astype(np.float32)

    def _rank(self, logits: np.ndarray, function: str, top_k: int) -> list[dict[str, Any]]:
        if function == "softmax":
            scores = softmax(logits)
        elif function == "sigmoid":
            scores = sigmoid(logits)
        else:
            scores = logits
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [{"score": float(scores[i]), "label": self.id2label[int(i)]} for i in order]
