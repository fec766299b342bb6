"""CTC vocabularies and greedy decoding, as transformers' ``Wav2Vec2CTCTokenizer``.

Reads ``vocab.json`` (or, in transformers.js folders, the vocabulary inside ``tokenizer.json``) and the
settings in ``tokenizer_config.json``: the blank (pad) token, the word delimiter and what replaces it,
lower-casing, ``target_lang`` for nested multilingual vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..errors import BundleError
from .tokenizer import clean_up_tokenization, token_content


@dataclass(frozen=True)
class CharOffset:
    char: str
    start_offset: int
    end_offset: int


@dataclass(frozen=True)
class WordOffset:
    word: str
    start_offset: int
    end_offset: int


class CTCVocab:
    """id -> token table plus the decoding settings of a CTC tokenizer."""

    def __init__(self, vocab: dict[str, int], config: dict[str, Any]):
        self.encoder = dict(vocab)
        self.decoder = {int(i): tok for tok, i in vocab.items()}
        for key, item in (config.get("added_tokens_decoder") or {}).items():
            content = token_content(item)
            if content is not None:
                self.decoder[int(key)] = content
        self.pad_token = token_content(config.get("pad_token")) or "<pad>"
        self.unk_token = token_content(config.get("unk_token")) or "<unk>"
        self.word_delimiter_token = token_content(config.get("word_delimiter_token")) or "|"
        self.replace_word_delimiter_char = config.get("replace_word_delimiter_char", " ")
        self.do_lower_case = bool(config.get("do_lower_case", False))
        self.clean_up_spaces = bool(config.get("clean_up_tokenization_spaces", False))

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> CTCVocab:
        config = dict(bundle.read_json_optional("special_tokens_map.json") or {})
        config.update(bundle.read_json_optional("tokenizer_config.json") or {})
        if bundle.has("vocab.json"):
            vocab: Any = bundle.read_json("vocab.json")
        elif bundle.has("tokenizer.json"):
            vocab = (bundle.read_json("tokenizer.json").get("model") or {}).get("vocab")
        else:
            raise BundleError(
                f"bundle {bundle.root} has neither vocab.json nor tokenizer.json: a CTC model needs its vocabulary"
            )
        target = config.get("target_lang")
        if target is not None:
            if not isinstance(vocab, dict) or target not in vocab:
                raise BundleError(f"tokenizer_config.json sets target_lang={target!r}, which vocab.json does not hold")
            vocab = vocab[target]
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise BundleError(f"the CTC vocabulary of {bundle.root} is not a {{token: id}} table")
        return cls(vocab, config)

    def __len__(self) -> int:
        return len(self.decoder)

    def tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        return [self.decoder.get(int(i), self.unk_token) for i in ids]

    def _collapse(self, ids: np.ndarray | list[int]) -> tuple[list[str], list[int]]:
        """CTC collapse: runs of one token become one (with the run length)."""
        grouped = [(tok, len(list(run))) for tok, run in groupby(self.tokens(ids))]
        return [g[0] for g in grouped], [g[1] for g in grouped]

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Greedy CTC text: collapse repeats, drop blanks, word delimiter -> space (special tokens kept)."""
        chars, _ = self._collapse(ids)
        kept = [
            self.replace_word_delimiter_char if c == self.word_delimiter_token else c
            for c in chars
            if c != self.pad_token
        ]
        text = "".join(kept).strip()
        if self.do_lower_case:
            text = text.lower()
        return clean_up_tokenization(text) if self.clean_up_spaces else text

    def char_offsets(self, ids: np.ndarray | list[int]) -> list[CharOffset]:
        """Each emitted character with its [start, end) logit-frame span."""
        chars, runs = self._collapse(ids)
        ends = np.cumsum(runs) if runs else np.zeros(0, np.int64)
        starts = np.concatenate(([0], ends[:-1])) if runs else ends
        out = []
        for char, start, end in zip(chars, starts, ends):
            if char == self.pad_token:
                continue
            shown = self.replace_word_delimiter_char if char == self.word_delimiter_token else char
            out.append(CharOffset(shown, int(start), int(end)))
        return out

    def word_offsets(self, chars: list[CharOffset]) -> list[WordOffset]:
        """Group character offsets into words at the (replaced) word delimiter."""
        words: list[WordOffset] = []
        in_word, word, start, end = False, "", 0, 0
        for item in chars:
            is_space = item.char == self.replace_word_delimiter_char
            if not is_space and not in_word:
                word, start, end, in_word = item.char, item.start_offset, item.end_offset, True
            elif not is_space:
                word, end = word + item.char, item.end_offset
            elif in_word:
                words.append(WordOffset(word, start, end))
                in_word = False
        if in_word:
            words.append(WordOffset(word, start, end))
        return words
