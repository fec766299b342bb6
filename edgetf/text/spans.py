"""Extractive question-answering post-processing: start/end logits -> ranked answer spans.

Pure functions on numpy arrays; they follow transformers' QuestionAnsweringPipeline
(``select_starts_ends`` / ``decode_spans``) with the same float32 arithmetic and the same numpy
selection primitives, so scores, ties and the order of answers match it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NULL_SCORE_START = 1000000.0  # "no answer" score before any window has been seen (transformers' value)
_MASKED = -10000.0


def answer_mask(
    sequence_ids: Sequence[int | None],
    input_ids: Sequence[int],
    attention_mask: Sequence[int],
    *,
    cls_token_id: int | None,
    context_sequence: int | None = 1,
) -> np.ndarray:
    """int64 (seq,): 1 where a token may be part of an answer (a context token, or the CLS token), else 0.

    ``context_sequence=None`` allows every token, as transformers does when the context comes first
    (tokenizers that pad on the left).
    """
    if context_sequence is None:
        allowed = np.ones(len(sequence_ids), dtype=np.int64)
    else:
        allowed = np.array([sid == context_sequence for sid in sequence_ids], dtype=np.int64)
    if cls_token_id is not None:
        allowed[np.asarray(input_ids) == cls_token_id] = 1  # some models point at CLS for "no answer"
    return allowed & np.asarray(attention_mask, dtype=np.int64)


def span_probabilities(start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray) -> tuple[Any, Any]:
    """Softmax of start and end logits over the allowed tokens (the others get probability 0)."""
    blocked = allowed == 0
    probs = []
    for logits in (start_logits, end_logits):
        masked = np.where(blocked, _MASKED, np.asarray(logits, dtype=np.float32))
        shifted = np.exp(masked - masked.max(axis=-1, keepdims=True))
        probs.append(shifted / shifted.sum())
    return probs[0], probs[1]


def decode_spans(
    start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top_k`` best (start, end) token spans by start * end probability.

    Spans end at or after their start and are at most ``max_answer_len`` tokens long; spans that
    start or end outside the allowed tokens are dropped after ranking (so fewer than top_k may come
    back). Returns (starts, ends, scores), best first.

    Unlike transformers, spans outside the band (end before start, or longer than ``max_answer_len``)
    are dropped too: transformers ranks their zeroed cells with the rest, so with a ``top_k`` above the
    number of valid spans it returns 0-score answers with end < start.
    """
    table = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = table.ravel()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif flat.size <= top_k:  # (transformers uses argpartition at ==, which fails: kth out of bounds)
        order = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, top_k)[:top_k]
        order = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(order, table.shape)
    # transformers tests membership against np.nonzero() of a (1, seq) mask, whose row indices (all 0)
    # make token 0 always eligible; kept for identical results.
    eligible = np.union1d(np.flatnonzero(allowed), [0])
    keep = np.isin(starts, eligible) & np.isin(ends, eligible) & (starts <= ends) & (ends - starts < max_answer_len)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, table[starts, ends]


def char_span(encoding: Any, start: int, end: int, *, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character (start, end) in the context of token span [start, end] of a tokenizers Encoding.

    With ``align_to_words`` the span widens to whole words (when the tokens belong to words),
    else it is the tokens' own offsets.
    """
    if align_to_words:
        start_word, end_word = encoding.token_to_word(int(start)), encoding.token_to_word(int(end))
        if start_word is not None and end_word is not None:
            first = encoding.word_to_chars(start_word, sequence_index)
            last = encoding.word_to_chars(end_word, sequence_index)
            if first is not None and last is not None:
                return int(first[0]), int(last[1])
    return int(encoding.offsets[int(start)][0]), int(encoding.offsets[int(end)][1])


def add_answer(answers: list[dict[str, Any]], score: float, start: int, end: int, context: str) -> None:
    """Append an answer, or add its score to an earlier one with the same text (case-insensitive)."""
    text = context[start:end]
    for answer in answers:
        if answer["answer"].lower() == text.lower():
            answer["score"] += score
            return
    answers.append({"score": score, "start": start, "end": end, "answer": text})


def rank_answers(
    answers: list[dict[str, Any]], top_k: int, null_score: float | None
) -> dict[str, Any] | list[dict[str, Any]]:
    """Best ``top_k`` answers (plus the empty "no answer" when ``null_score`` is given); one answer
    comes back as a dict, several (or none) as a list."""
    ranked = list(answers)
    if null_score is not None:
        ranked.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    ranked = sorted(ranked, key=lambda a: a["score"], reverse=True)[:top_k]
    return ranked[0] if len(ranked) == 1 else ranked
