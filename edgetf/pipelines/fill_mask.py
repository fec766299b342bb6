"""fill-mask: same inputs, options and outputs as transformers' FillMaskPipeline."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from ..batching import check_batch_size
from ..errors import BundleError, InvalidInputError
from ..numeric import softmax
from ..text import TextTokenizer
from ..text.batches import run_in_batches
from .base import Pipeline

_TOKENIZER_KWARGS = ("truncation", "max_length")


def top_predictions(probs: np.ndarray, top_k: int, target_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(values, token ids), each (masks, k), best first, of (masks, vocab) probabilities.

    With ``target_ids`` only those tokens are ranked and ``top_k`` is capped at their number.
    """
    if target_ids is not None:
        probs = probs[:, target_ids]
        top_k = min(top_k, len(target_ids))
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
    values = np.take_along_axis(probs, order, axis=-1)
    ids = order if target_ids is None else target_ids[order]
    return values, ids


def filled(input_ids: np.ndarray, position: int, token_id: int, pad_token_id: int | None) -> np.ndarray:
    """``input_ids`` with ``position`` set to ``token_id`` and padding tokens removed."""
    tokens = np.array(input_ids, copy=True)
    tokens[position] = token_id
    return tokens if pad_token_id is None else tokens[tokens != pad_token_id]


class FillMaskPipeline(Pipeline):
    """``pipe("Paris is the [MASK] of France.")`` -> top_k dicts ``{score, token, token_str, sequence}``.

    Several mask tokens in one text give one list per mask (each mask scored on its own, the other
    masks left in ``sequence``); a list of texts gives one result per text. ``targets`` (a str or a
    list) restricts the candidates; a target that is not one vocabulary token is replaced by its
    first token, with a warning, as in transformers.

    Truncation: ``tokenizer_kwargs={"truncation": True, "max_length": N}`` as in transformers. Without
    tokenizer_kwargs an input longer than the model's maximum length is cut to it (transformers would
    fail) unless that cuts off a mask token, which raises InvalidInputError. batch_size: texts per
    model call (results equal batch_size=1 within float noise).
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "top_k": 5,
        "targets": None,
        "tokenizer_kwargs": None,
        "batch_size": 1,
    }

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.mask_token = self.tokenizer.special_tokens.get("mask_token")
        self.mask_token_id = self.tokenizer.token_id("mask_token")
        if self.mask_token_id is None:
            raise BundleError(f"the tokenizer of {self.bundle.root} defines no mask_token, so it cannot fill masks")
        pad = self.tokenizer.token_id("pad_token")
        self._pad_id = pad

    def demo_input(self) -> Any:
        return f"Paris is the {self.mask_token} of France."

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.options(kwargs)
        top_k = opts["top_k"]
        if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
            raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}")
        target_ids = None if opts["targets"] is None else self.target_ids(opts["targets"])
        if target_ids is None and top_k > self.tokenizer.vocab_size:
            raise InvalidInputError(f"top_k={top_k} is larger than the vocabulary ({self.tokenizer.vocab_size} tokens)")
        tokenizer_kwargs = _tokenizer_kwargs(opts["tokenizer_kwargs"])
        batch_size = check_batch_size(opts["batch_size"])
        single = isinstance(inputs, str)
        if not single and not isinstance(inputs, (list, tuple)):
            raise InvalidInputError(f"fill-mask takes a str or a list of str; got {type(inputs).__name__}")
        encodings = [self._encode(text, tokenizer_kwargs) for text in ([inputs] if single else inputs)]
        logits = run_in_batches(
            encodings,
            lambda feeds: self.session().run(feeds, ["logits"]),
            pad_token_id=self.tokenizer.pad_token_id,
            padding_side=self.tokenizer.padding_side,
            batch_size=batch_size,
        )
        results = [self._predict(enc, out["logits"], int(top_k), target_ids) for enc, out in zip(encodings, logits)]
        return results[0] if len(results) == 1 else results

    def target_ids(self, targets: Any) -> np.ndarray:
        """Vocabulary ids of ``targets`` (a str or list of str); unknown ones map to their first token."""
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InvalidInputError(f"targets must be a str or a list of str, got {targets!r:.80}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            token_id = vocab.get(target)
            if token_id is None:
                pieces = self.tokenizer.encode(target, add_special_tokens=False, truncation=True, max_length=1).ids
                if not pieces:
                    warnings.warn(
                        f"The specified target token `{target}` does not exist in the model vocabulary. "
                        "We cannot replace it with anything meaningful, ignoring it",
                        UserWarning,
                        stacklevel=3,
                    )
                    continue
                token_id = pieces[0]
                warnings.warn(
                    f"The specified target token `{target}` does not exist in the model vocabulary. "
                    f"Replacing with `{self.tokenizer.id_to_token(token_id)}`.",
                    UserWarning,
                    stacklevel=3,
                )
            ids.append(token_id)
        unique = list(set(ids))  # the order transformers uses (a set of ints)
        if not unique:
            raise InvalidInputError("At least one target must be provided when passed.")
        return np.array(unique)

    def _predict(self, enc: Any, logits: np.ndarray, top_k: int, target_ids: np.ndarray | None) -> list[Any]:
        """The top_k predictions for each mask token of one encoding, from its (seq, vocab) logits."""
        input_ids = np.asarray(enc.ids, dtype=np.int64)
        positions = np.flatnonzero(input_ids == self.mask_token_id)
        probs = softmax(logits[positions].astype(np.float32))
        values, ids = top_predictions(probs, top_k, target_ids)
        single = positions.size == 1
        rows = []
        for position, row_values, row_ids in zip(positions, values.tolist(), ids.tolist()):
            rows.append(
                [
                    {
                        "score": score,
                        "token": token,
                        "token_str": self.tokenizer.decode([token]),
                        "sequence": self.tokenizer.decode(
                            filled(input_ids, position, token, self._pad_id), skip_special_tokens=single
                        ),
                    }
                    for score, token in zip(row_values, row_ids)
                ]
            )
        return rows[0] if single else rows

    def _encode(self, text: Any, tokenizer_kwargs: dict[str, Any] | None) -> Any:
        """The encoding of one input (checked: a str, that fits the model, with at least one mask)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"fill-mask takes str inputs; got {type(text).__name__}: {str(text)[:60]!r}")
        tok, limit = self.tokenizer, self.tokenizer.model_max_length
        if tokenizer_kwargs is not None:
            enc = tok.encode(text, **tokenizer_kwargs)
            if limit is not None and len(enc.ids) > limit:
                raise InvalidInputError(
                    f"the input is {len(enc.ids)} tokens, longer than the model's maximum of {limit}; "
                    "pass tokenizer_kwargs={'truncation': True}"
                )
        else:
            enc = tok.encode(text)
            if limit is not None and len(enc.ids) > limit:
                whole = enc.ids.count(self.mask_token_id)
                enc = tok.encode(text, truncation=True)
                kept = enc.ids.count(self.mask_token_id)
                if kept < whole:
                    raise InvalidInputError(
                        f"the input is longer than the model's maximum of {limit} tokens and {whole - kept} of its "
                        f"{whole} mask tokens lie past that; move the masks earlier or shorten the text"
                    )
        if self.mask_token_id not in enc.ids:
            raise InvalidInputError(f"No mask_token ({self.mask_token}) found on the input: {text[:80]!r}")
        return enc


def _tokenizer_kwargs(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(_TOKENIZER_KWARGS):
        raise InvalidInputError(f"tokenizer_kwargs must be a dict with keys among {_TOKENIZER_KWARGS}; got {value!r}")
    return dict(value)
