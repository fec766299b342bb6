"""feature-extraction: transformers' FeatureExtractionPipeline outputs, plus opt-in sentence embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..batching import batched
from ..errors import InvalidInputError
from ..text import TextTokenizer
from .base import Pipeline

_TOKENIZE_KWARGS = ("truncation", "max_length", "add_special_tokens")
POOLING = ("none", "mean", "cls")


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(batch, hidden): the mean of each row's hidden states over its attended tokens
    (sentence-transformers' mean pooling: sum(h * mask) / max(sum(mask), 1e-9))."""
    mask = attention_mask.astype(np.float32)[..., None]
    summed = (hidden.astype(np.float32) * mask).sum(axis=1)
    return summed / np.maximum(mask.sum(axis=1), np.float32(1e-9))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (torch.nn.functional.normalize: x / max(||x||, eps))."""
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x / np.maximum(norm, np.float32(eps))


class FeatureExtractionPipeline(Pipeline):
    """``pipe("text")`` -> the model's last hidden states as nested lists ``[1][seq][hidden]``, as
    transformers returns them; a list of texts gives one such item per text.
    ``return_tensors=True`` gives numpy float32 arrays ``(1, seq, hidden)`` instead of lists.

    Sentence embeddings (an edgetf option, off by default):
      pooling="mean": the mean over the tokens the attention mask keeps ("cls": the first token);
      normalize=True: scaled to unit L2 norm. Each text then gives one ``[hidden]`` vector
      (a list, or a float32 array with return_tensors=True) -- the numbers of the usual
      sentence-transformers computation (mean over the mask, then F.normalize).

    Truncation: ``truncation=True`` or ``tokenize_kwargs`` as in transformers. When neither says, text
    longer than the model's maximum length is cut to it (transformers would fail on it).
    batch_size runs several texts per model call; each text's output keeps its own length.
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "truncation": None,
        "tokenize_kwargs": None,
        "return_tensors": False,
        "pooling": None,
        "normalize": False,
        "batch_size": 1,
    }

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        tokenize = self._tokenize_kwargs(opts["truncation"], opts["tokenize_kwargs"])
        pooling = "none" if opts["pooling"] is None else opts["pooling"]
        if pooling not in POOLING:
            raise InvalidInputError(f"pooling={pooling!r} is not accepted; use None or one of {POOLING}")
        normalize = bool(opts["normalize"])
        if normalize and pooling == "none":
            raise InvalidInputError("normalize=True needs pooling='mean' or 'cls' (one vector per text)")
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, (list, tuple)):
            raise InvalidInputError(f"feature-extraction takes a str or a list of str; got {type(inputs).__name__}")
        for text in texts:
            if not isinstance(text, str):
                raise InvalidInputError(f"feature-extraction takes str inputs; got {type(text).__name__}")
        results = []
        for chunk in batched(list(texts), opts["batch_size"]):
            hidden, mask = self.hidden_states(chunk, tokenize)
            for row in range(len(chunk)):
                results.append(self._output(hidden[row : row + 1], mask[row : row + 1], pooling, normalize))
        if not opts["return_tensors"]:
            results = [r.tolist() for r in results]
        return results[0] if single else results

    def hidden_states(self, texts: list[str], tokenize: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(last hidden states (batch, seq, hidden) float32, attention mask (batch, seq)) for a batch."""
        encodings = []
        limit = self.tokenizer.model_max_length
        for text in texts:
            enc = self.tokenizer.encode(text, **tokenize)
            if limit is not None and len(enc.ids) > limit:
                raise InvalidInputError(
                    f"the input is {len(enc.ids)} tokens, longer than the model's maximum of {limit}; "
                    "pass truncation=True"
                )
            encodings.append(enc)
        feeds = self.tokenizer.arrays(encodings)
        session = self.session()
        hidden = session.run(feeds, [session.output_names[0]])[session.output_names[0]]
        return hidden.astype(np.float32), feeds["attention_mask"]

    def _output(self, hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
        """One text's (1, seq, hidden) states trimmed to its own tokens, or its pooled (hidden,) vector."""
        keep = mask[0].astype(bool)
        hidden, mask = hidden[:, keep], mask[:, keep]
        if pooling == "none":
            return hidden
        vector = mean_pool(hidden, mask) if pooling == "mean" else hidden[:, 0]
        if normalize:
            vector = l2_normalize(vector)
        return vector[0]

    def _tokenize_kwargs(self, truncation: Any, tokenize_kwargs: Any) -> dict[str, Any]:
        kwargs = {} if tokenize_kwargs is None else tokenize_kwargs
        if not isinstance(kwargs, dict) or set(kwargs) - set(_TOKENIZE_KWARGS):
            raise InvalidInputError(
                f"tokenize_kwargs must be a dict with keys among {_TOKENIZE_KWARGS}; got {kwargs!r}"
            )
        kwargs = dict(kwargs)
        if truncation is not None:
            if "truncation" in kwargs:
                raise InvalidInputError(
                    "truncation parameter defined twice (given as keyword argument as well as in tokenize_kwargs)"
                )
            kwargs["truncation"] = truncation
        kwargs.setdefault("truncation", True)
        return kwargs
