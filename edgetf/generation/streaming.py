"""Incremental detokenization: text pieces as tokens arrive, never splitting a multi-byte character.

Byte-level BPE tokens can end in the middle of a UTF-8 character; decoding such a prefix yields
U+FFFD. The decoder below holds text back while it ends in U+FFFD and emits only the stable part,
so the concatenated pieces equal the decode of the whole sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed token ids with :meth:`push`; each call returns the newly completed text ('' if none)."""

    def __init__(
        self, decode: Callable[[list[int]], str], skip_ids: Iterable[int] = (), prefix_ids: Iterable[int] = ()
    ):
        """prefix_ids: tokens already shown (e.g. the prompt); text is emitted from the end of their decode."""
        self.decode = decode
        self.skip = set(skip_ids)
        self.tokens: list[int] = [int(t) for t in prefix_ids]
        self.emitted = decode(self.tokens) if self.tokens else ""
        self.start = len(self.tokens)

    def push(self, token_id: int) -> str:
        if int(token_id) in self.skip:
            return ""
        self.tokens.append(int(token_id))
        text = self.decode(self.tokens)
        if text.endswith(REPLACEMENT):
            return ""  # an incomplete character: wait for the next token
        return self._advance(text)

    def flush(self) -> str:
        """Whatever is left (including a trailing incomplete character) at the end of generation."""
        return self._advance(self.decode(self.tokens)) if len(self.tokens) > self.start else ""

    def _advance(self, text: str) -> str:
        # cut by length, as transformers cuts the prompt's decoded length off the full decode
        piece = text[len(self.emitted) :]
        if len(text) > len(self.emitted):
            self.emitted = text
        return piece


def stream_text(
    tokens: Iterable[int], decode: Callable[[list[int]], str], skip_ids: Iterable[int] = ()
) -> Iterator[str]:
    """Text pieces for a stream of token ids (empty pieces are skipped)."""
    decoder = IncrementalDecoder(decode, skip_ids)
    for token in tokens:
        piece = decoder.push(token)
        if piece:
            yield piece
    tail = decoder.flush()
    if tail:
        yield tail
