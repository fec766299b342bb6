"""A thin wrapper over ``tokenizers.Tokenizer`` that behaves like transformers' fast tokenizers.

It reads ``tokenizer.json`` (the same file transformers uses, so token ids are identical) plus
``tokenizer_config.json`` / ``special_tokens_map.json`` for the settings transformers keeps
outside it: model_max_length, padding/truncation side, special tokens, and
clean_up_tokenization_spaces.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from ..bundle import Bundle
from ..errors import BundleError, InvalidInputError

_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_TRUNCATION = {
    True: "longest_first",
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
}
_HUGE = 10**6  # transformers writes VERY_LARGE_INTEGER when a tokenizer has no maximum length


def token_content(value: Any) -> str | None:
    """A special token's text from tokenizer_config.json: a plain str, or an AddedToken dict's ``content``."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def check_text(value: Any, what: str = "text") -> str:
    """Return ``value`` if it is a str; else an InvalidInputError naming what is accepted."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}: {value!r:.80}")
    return value


@dataclass(frozen=True)
class _TruncationKey:
    max_length: int | None
    stride: int
    strategy: str
    side: str


class TextTokenizer:
    """Encodes text exactly as the matching transformers ``PreTrainedTokenizerFast``."""

    def __init__(self, tokenizer: Tokenizer, config: dict[str, Any], model_config: dict[str, Any] | None = None):
        self._base = tokenizer
        self._base.no_truncation()
        self._base.no_padding()
        self._json = self._base.to_str()
        self._variants: dict[_TruncationKey, Tokenizer] = {}
        self._lock = threading.Lock()
        self.config = config
        max_len = config.get("model_max_length")
        if not isinstance(max_len, (int, float)) or max_len >= _HUGE:
            max_len = (model_config or {}).get("max_position_embeddings")
        self.model_max_length: int | None = int(max_len) if max_len else None
        self.padding_side: str = config.get("padding_side", "right")
        self.truncation_side: str = config.get("truncation_side", "right")
        self.clean_up_spaces: bool = bool(config.get("clean_up_tokenization_spaces", False))
        self.special_tokens: dict[str, str] = {}
        for name in _SPECIAL_NAMES:
            content = token_content(config.get(name))
            if content is not None:
                self.special_tokens[name] = content
        self.all_special_ids = sorted(
            {i for t in self.special_tokens.values() if (i := tokenizer.token_to_id(t)) is not None}
            | {i for i, tok in tokenizer.get_added_tokens_decoder().items() if tok.special}
        )

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> TextTokenizer:
        if not bundle.has("tokenizer.json"):
            raise BundleError(
                f"bundle {bundle.root} has no tokenizer.json; edgetf needs the fast-tokenizer file "
                "(save the tokenizer with a transformers *TokenizerFast before exporting)"
            )
        path = bundle.file("tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise BundleError(f"cannot read {path}: {exc}") from exc
        config = dict(bundle.read_json_optional("special_tokens_map.json") or {})
        config.update(bundle.read_json_optional("tokenizer_config.json") or {})
        return cls(tokenizer, config, bundle.config)

    # -- special tokens --------------------------------------------------------------------
    def token_id(self, name: str) -> int | None:
        """Id of a special token by role ('pad_token', 'mask_token', ...), or None."""
        token = self.special_tokens.get(name)
        return None if token is None else self._base.token_to_id(token)

    @property
    def pad_token_id(self) -> int:
        pad = self.token_id("pad_token")
        return 0 if pad is None else pad

    def token_to_id(self, token: str) -> int | None:
        return self._base.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._base.id_to_token(int(token_id))

    @property
    def vocab_size(self) -> int:
        return self._base.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """token -> id, added tokens included (transformers' ``get_vocab``)."""
        return self._base.get_vocab(with_added_tokens=True)

    @property
    def continuing_subword_prefix(self) -> str | None:
        """The WordPiece continuation prefix ("##"): tokens mark words. None for byte-level BPE and others."""
        return getattr(self._base.model, "continuing_subword_prefix", None) or None

    def num_special_tokens(self, pair: bool = False) -> int:
        """How many special tokens the post-processor adds to one text (or a pair)."""
        processor = self._base.post_processor
        return 0 if processor is None else processor.num_special_tokens_to_add(pair)

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join token strings as transformers' fast tokenizers do (the decoder, else spaces)."""
        decoder = self._base.decoder
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    # -- encoding ----------------------------------------------------------------------------
    def _variant(self, truncation: bool | str, max_length: int | None, stride: int) -> Tokenizer:
        if truncation is False or truncation == "do_not_truncate":
            return self._base
        strategy = _TRUNCATION.get(truncation)
        if strategy is None:
            raise InvalidInputError(
                f"truncation={truncation!r} is not accepted; use True, False, 'longest_first', 'only_first', "
                "'only_second' or 'do_not_truncate'"
            )
        length = max_length if max_length is not None else self.model_max_length
        if length is None:
            return self._base
        key = _TruncationKey(int(length), int(stride), strategy, self.truncation_side)
        with self._lock:
            tok = self._variants.get(key)
            if tok is None:
                tok = Tokenizer.from_str(self._json)
                try:
                    tok.enable_truncation(key.max_length, stride=key.stride, strategy=key.strategy, direction=key.side)
                except ValueError as exc:  # e.g. a stride that leaves no room for new tokens in a window
                    raise InvalidInputError(f"cannot truncate to max_length={key.max_length}: {exc}") from exc
                self._variants[key] = tok
        return tok

    def encode(
        self,
        text: str | Sequence[str],
        text_pair: str | None = None,
        *,
        truncation: bool | str = False,
        max_length: int | None = None,
        stride: int = 0,
        add_special_tokens: bool = True,
        is_pretokenized: bool = False,
    ) -> Encoding:
        """One encoding (overflowing windows, when truncated, are in ``.overflowing``; see :func:`windows`).

        ``is_pretokenized``: ``text`` is a list of words (offsets are then relative to each word).
        """
        if is_pretokenized:
            if not isinstance(text, (list, tuple)) or not all(isinstance(w, str) for w in text):
                raise InvalidInputError(f"pre-tokenized text must be a list of str, got {str(text)[:80]!r}")
            if self.config.get("add_prefix_space") is False:
                # byte-level BPE tokenizers (RoBERTa, GPT-2) mark word starts with a leading space;
                # transformers refuses pre-tokenized input for them unless add_prefix_space=True
                raise InvalidInputError(
                    "this tokenizer has add_prefix_space=False, so it cannot take pre-tokenized words "
                    "(is_split_into_words=True); pass the text as one str instead"
                )
            text = list(text)
        else:
            check_text(text, "text")
        if text_pair is not None:
            check_text(text_pair, "text_pair")
        tok = self._variant(truncation, max_length, stride)
        return tok.encode(text, text_pair, is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens)

    def encode_batch(self, texts: Sequence[str], **kwargs: Any) -> list[Encoding]:
        return [self.encode(t, **kwargs) for t in texts]

    def arrays(self, encodings: Sequence[Encoding], side: str | None = None) -> dict[str, np.ndarray]:
        """input_ids, attention_mask, token_type_ids as int64 arrays, padded to the longest."""
        return pad_batch(
            [e.ids for e in encodings],
            [e.type_ids for e in encodings],
            self.pad_token_id,
            side or self.padding_side,
        )

    # -- decoding ----------------------------------------------------------------------------
    def decode(
        self, ids: Sequence[int], *, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        text = self._base.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text


def windows(encoding: Encoding) -> list[Encoding]:
    """An encoding and its overflowing windows, in transformers' order (``return_overflowing_tokens``)."""
    return [encoding, *encoding.overflowing]


def pad_batch(
    ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None, pad_id: int, side: str = "right"
) -> dict[str, np.ndarray]:
    """Pad token-id lists into rectangular int64 arrays with an attention mask."""
    longest = max((len(x) for x in ids), default=0)
    n = len(ids)
    input_ids = np.full((n, longest), pad_id, dtype=np.int64)
    mask = np.zeros((n, longest), dtype=np.int64)
    types = np.zeros((n, longest), dtype=np.int64)
    for row, seq in enumerate(ids):
        span = slice(longest - len(seq), longest) if side == "left" else slice(0, len(seq))
        input_ids[row, span] = seq
        mask[row, span] = 1
        if type_ids is not None:
            types[row, span] = type_ids[row]
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
