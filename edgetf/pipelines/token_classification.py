"""token-classification (NER, POS): same inputs, options and outputs as transformers' TokenClassificationPipeline."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from ..batching import check_batch_size
from ..errors import InvalidInputError
from ..numeric import softmax
from ..text import TextTokenizer, windows
from ..text import entities as ents
from ..text.batches import run_in_batches
from .base import Pipeline
from .text_classification import label_map


class TokenClassificationPipeline(Pipeline):
    """``pipe("text")`` -> list of entity dicts; ``pipe(["a", "b"])`` -> one list per text.

    Options (as transformers):
      aggregation_strategy: "none" (default: one dict per token with ``entity``, ``score``, ``index``,
        ``word``, ``start``, ``end``), "simple" (adjacent tokens with the same tag grouped, ``entity_group``),
        "first" / "average" / "max" (sub-word tokens fused into words first, so a word has one label).
      ignore_labels: labels left out of the result (default ``["O"]``).
      stride: process the whole text in overlapping windows of the model's maximum length, ``stride``
        tokens of overlap (otherwise text past the maximum length is cut off, as in transformers).
      is_split_into_words / delimiter: the input is a list of words (or a list of such lists), joined
        with ``delimiter`` (default " ") for ``start``/``end``.
      grouped_entities / ignore_subwords: deprecated spellings of aggregation_strategy.
      batch_size: windows (of all inputs) per model call; results equal batch_size=1 within float noise.
    Scores are Python floats (transformers returns numpy float32 scalars of the same value).
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "aggregation_strategy": None,
        "ignore_labels": None,
        "stride": None,
        "is_split_into_words": False,
        "delimiter": None,
        "grouped_entities": None,
        "ignore_subwords": None,
        "batch_size": 1,
    }

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.id2label = label_map(self.bundle.config)
        self._unk_id = self.tokenizer.token_id("unk_token")

    def demo_input(self) -> Any:
        return "My name is Sarah and I live in London, where I work for the BBC."

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        strategy, explicit = self._strategy(opts)
        ignore = ["O"] if opts["ignore_labels"] is None else _labels(opts["ignore_labels"])
        stride = self._stride(opts["stride"], strategy, explicit)
        split = bool(opts["is_split_into_words"])
        delimiter = " " if opts["delimiter"] is None else opts["delimiter"]
        if split and not isinstance(delimiter, str):
            raise InvalidInputError(f"delimiter must be a str, got {type(delimiter).__name__}")

        batch_size = check_batch_size(opts["batch_size"])

        if isinstance(inputs, str) and not split:
            return self._run([inputs], strategy, ignore, stride, None, batch_size)[0]
        if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
            raise InvalidInputError(
                "token-classification takes a str or a non-empty list of str "
                f"(lists of words with is_split_into_words=True); got {_describe(inputs)}"
            )
        if split and not all(isinstance(item, list) for item in inputs):
            return self._run([list(inputs)], strategy, ignore, stride, delimiter, batch_size)
        return self._run(list(inputs), strategy, ignore, stride, delimiter if split else None, batch_size)

    # -- options ---------------------------------------------------------------------------------
    def _strategy(self, opts: dict[str, Any]) -> tuple[str, bool]:
        """The aggregation strategy, and whether it was given (a given "none" forbids ``stride``)."""
        strategy = opts["aggregation_strategy"]
        grouped, ignore_subwords = opts["grouped_entities"], opts["ignore_subwords"]
        if grouped is not None or ignore_subwords is not None:
            if grouped and ignore_subwords:
                strategy = "first"
            elif grouped:
                strategy = "simple"
            else:
                strategy = "none"
            warnings.warn(
                f"grouped_entities / ignore_subwords are deprecated; use aggregation_strategy={strategy!r}",
                FutureWarning,
                stacklevel=3,
            )
        if strategy is None:
            return "none", False
        name = getattr(strategy, "value", strategy)  # also accept transformers' AggregationStrategy enum
        if not isinstance(name, str) or name.lower() not in ents.STRATEGIES:
            raise InvalidInputError(f"aggregation_strategy={strategy!r} is not accepted; use one of {ents.STRATEGIES}")
        return name.lower(), True

    def _stride(self, stride: Any, strategy: str, explicit: bool) -> int | None:
        if stride is None:
            return None
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            raise InvalidInputError(f"stride must be an integer >= 0, got {stride!r}")
        max_length = self.tokenizer.model_max_length
        if max_length is None or stride >= max_length:
            raise InvalidInputError(
                f"stride ({stride}) must be less than the tokenizer's model_max_length ({max_length}) "
                "(or even lower, as the tokenizer adds special tokens)"
            )
        if explicit and strategy == "none":
            raise InvalidInputError(
                'stride was given to process all the text, but aggregation_strategy="none" cannot merge the '
                'windows; use "simple", "first", "average" or "max"'
            )
        return stride

    # -- inputs ----------------------------------------------------------------------------------
    def _run(
        self,
        items: list[Any],
        strategy: str,
        ignore: list[str],
        stride: int | None,
        delimiter: str | None,
        batch_size: int,
    ) -> list[list[dict[str, Any]]]:
        """Entities per input; the windows of all inputs go through the model in batches."""
        prepared = [self._prepare(item, stride, delimiter) for item in items]
        flat = [enc for _, encodings, _ in prepared for enc in encodings]
        logits = run_in_batches(
            flat,
            lambda feeds: self.session().run(feeds, ["logits"]),
            pad_token_id=self.tokenizer.pad_token_id,
            padding_side=self.tokenizer.padding_side,
            batch_size=batch_size,
        )
        word_aware = self.tokenizer.continuing_subword_prefix is not None
        if not word_aware and strategy in ents.WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning, stacklevel=3)
        results, position = [], 0
        for sentence, encodings, word_starts in prepared:
            found: list[dict[str, Any]] = []
            for enc in encodings:
                scores = softmax(logits[position]["logits"].astype(np.float32))
                position += 1
                records = ents.gather_tokens(
                    sentence,
                    [self.tokenizer.id_to_token(i) for i in enc.ids],
                    enc.ids,
                    scores,
                    enc.offsets,
                    enc.special_tokens_mask,
                    unk_token_id=self._unk_id,
                    word_aware=word_aware,
                    word_ids=enc.word_ids if word_starts is not None else None,
                    word_starts=word_starts,
                )
                grouped = ents.aggregate(records, strategy, self.id2label, self.tokenizer.convert_tokens_to_string)
                found.extend(ents.drop_labels(grouped, ignore))
            if len(encodings) > 1:
                found = ents.merge_overlapping(found)
            results.append(ents.to_python(found))
        return results

    def _prepare(self, item: Any, stride: int | None, delimiter: str | None) -> tuple[str, list[Any], Any]:
        """(text, its windows, first character of each word for pre-tokenized input else None)."""
        word_starts = None
        if delimiter is not None:  # pre-tokenized: a list of words
            if not isinstance(item, list) or not all(isinstance(w, str) for w in item):
                raise InvalidInputError(
                    f"with is_split_into_words=True each input is a list of str; got {_describe(item)}"
                )
            sentence = delimiter.join(item)
            word_starts, position = [], 0
            for word in item:
                word_starts.append(position)
                position += len(word) + len(delimiter)
            return sentence, self._encode(item, stride, True), word_starts
        if not isinstance(item, str):
            raise InvalidInputError(
                "token-classification takes str inputs (or lists of words with is_split_into_words=True); "
                f"got {_describe(item)}"
            )
        return item, self._encode(item, stride, False), None

    def _encode(self, text: Any, stride: int | None, pretokenized: bool) -> list[Any]:
        """The windows the model sees: the first max-length window, or all of them with ``stride``."""
        tok = self.tokenizer
        truncate = bool(tok.model_max_length)
        if stride is None:
            return [tok.encode(text, truncation=truncate, is_pretokenized=pretokenized)]
        whole = tok.encode(text, is_pretokenized=pretokenized)
        room = (tok.model_max_length or 0) - tok.num_special_tokens(pair=False)
        if len(whole) > (tok.model_max_length or len(whole)) and stride >= room:  # tokenizers would panic
            raise InvalidInputError(
                f"stride ({stride}) must be less than {room}: the model's maximum length "
                f"({tok.model_max_length}) minus the {tok.num_special_tokens()} special tokens of each window"
            )
        return windows(tok.encode(text, truncation=True, stride=stride, is_pretokenized=pretokenized))


def _labels(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidInputError(f"ignore_labels must be a list of label names, got {value!r}")
    return list(value)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {str(value)[:60]!r}"
