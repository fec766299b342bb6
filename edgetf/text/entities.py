"""Token-classification post-processing: per-token scores -> tokens, words and entity groups.

Pure functions on numpy arrays and plain dicts; they follow transformers' TokenClassificationPipeline
step by step (same grouping rules, same float32 arithmetic), so results match it exactly:

1. :func:`gather_tokens` turns one window's scores into token records (special tokens dropped,
   character offsets, whether a token continues the previous word).
2. :func:`aggregate` applies the aggregation strategy: "none" keeps tokens, "simple" groups
   adjacent tokens with the same tag, "first" / "average" / "max" first fuse sub-word tokens into
   words (so a word gets one label), then group.
3. :func:`drop_labels` removes ignored labels; :func:`merge_overlapping` resolves entities found
   twice in overlapping windows (``stride``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")

JoinTokens = Callable[[list[str]], str]


def gather_tokens(
    sentence: str,
    tokens: Sequence[str],
    input_ids: Sequence[int],
    scores: np.ndarray,
    offsets: Sequence[tuple[int, int]],
    special_tokens_mask: Sequence[int],
    *,
    unk_token_id: int | None,
    word_aware: bool,
    word_ids: Sequence[int | None] | None = None,
    word_starts: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Token records ``{word, scores, start, end, index, is_subword}`` for the non-special tokens.

    tokens: the vocabulary string of each token ("##ing", "Ġthe"); scores: (seq, labels) probabilities.
    word_aware: the tokenizer marks word continuations (WordPiece "##"): a token is a sub-word when
      its string and the text it covers differ in length. Otherwise the heuristic is: a sub-word
      starts after a non-space character.
    word_ids / word_starts: for pre-tokenized input, offsets are relative to each word; they are
      shifted by the word's first character in ``sentence``.
    """
    records = []
    for idx in range(len(input_ids)):
        if special_tokens_mask[idx]:
            continue
        word = tokens[idx]
        start, end = int(offsets[idx][0]), int(offsets[idx][1])
        if word_ids is not None and word_starts is not None and word_ids[idx] is not None:
            shift = word_starts[word_ids[idx]]
            start, end = start + shift, end + shift
        covered = sentence[start:end]
        if word_aware:
            is_subword = len(word) != len(covered)
        else:
            is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
        if unk_token_id is not None and int(input_ids[idx]) == unk_token_id:
            word, is_subword = covered, False
        records.append(
            {"word": word, "scores": scores[idx], "start": start, "end": end, "index": idx, "is_subword": is_subword}
        )
    return records


def aggregate(
    records: list[dict[str, Any]], strategy: str, id2label: dict[int, str], join: JoinTokens
) -> list[dict[str, Any]]:
    """Apply an aggregation strategy to one window's token records (see the module docstring)."""
    if strategy in ("none", "simple"):
        entities = []
        for rec in records:
            best = int(rec["scores"].argmax())
            entities.append(
                {
                    "entity": id2label[best],
                    "score": rec["scores"][best],
                    "index": rec["index"],
                    "word": rec["word"],
                    "start": rec["start"],
                    "end": rec["end"],
                }
            )
    elif strategy in WORD_STRATEGIES:
        entities = [aggregate_word(group, strategy, id2label, join) for group in split_words(records)]
    else:
        raise ValueError(f"aggregation strategy {strategy!r} is not one of {STRATEGIES}")
    return entities if strategy == "none" else group_entities(entities, join)


def split_words(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive records grouped into words: a new word starts at every non-sub-word token."""
    words: list[list[dict[str, Any]]] = []
    for rec in records:
        if words and rec["is_subword"]:
            words[-1].append(rec)
        else:
            words.append([rec])
    return words


def aggregate_word(
    records: list[dict[str, Any]], strategy: str, id2label: dict[int, str], join: JoinTokens
) -> dict[str, Any]:
    """One word's label and score from its tokens: the first token's, the most confident token's,
    or the argmax of the averaged distributions."""
    if strategy == "first":
        scores = records[0]["scores"]
    elif strategy == "max":
        scores = max(records, key=lambda rec: rec["scores"].max())["scores"]
    elif strategy == "average":
        scores = np.nanmean(np.stack([rec["scores"] for rec in records]), axis=0)
    else:
        raise ValueError(f"word aggregation strategy {strategy!r} is not one of {WORD_STRATEGIES}")
    best = int(scores.argmax())
    return {
        "entity": id2label[best],
        "score": scores[best],
        "word": join([rec["word"] for rec in records]),
        "start": records[0]["start"],
        "end": records[-1]["end"],
    }


def split_tag(label: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("I", "PER") for "I-PER"; a label without prefix counts as "I"."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_entities(entities: list[dict[str, Any]], join: JoinTokens) -> list[dict[str, Any]]:
    """Merge adjacent entities with the same tag; a "B-" label always starts a new group."""
    groups: list[list[dict[str, Any]]] = []
    for entity in entities:
        if groups:
            bi, tag = split_tag(entity["entity"])
            _, last_tag = split_tag(groups[-1][-1]["entity"])
            if tag == last_tag and bi != "B":
                groups[-1].append(entity)
                continue
        groups.append([entity])
    return [_group(members, join) for members in groups]


def _group(members: list[dict[str, Any]], join: JoinTokens) -> dict[str, Any]:
    return {
        "entity_group": members[0]["entity"].split("-", 1)[-1],
        "score": np.mean(np.nanmean([m["score"] for m in members])),
        "word": join([m["word"] for m in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }


def drop_labels(entities: list[dict[str, Any]], ignore_labels: Sequence[str]) -> list[dict[str, Any]]:
    """Entities whose label (``entity`` or ``entity_group``) is not in ``ignore_labels``."""
    return [e for e in entities if e.get("entity") not in ignore_labels and e.get("entity_group") not in ignore_labels]


def merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities from overlapping windows, sorted by start; of two that overlap, keep the longer
    (on equal length, the higher score)."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda e: e["start"])
    kept = []
    current = ordered[0]
    for entity in ordered:
        if current["start"] <= entity["start"] < current["end"]:
            length, current_length = entity["end"] - entity["start"], current["end"] - current["start"]
            if length > current_length or (length == current_length and entity["score"] > current["score"]):
                current = entity
        else:
            kept.append(current)
            current = entity
    kept.append(current)
    return kept


def to_python(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Numpy scalars -> Python floats, so results compare and serialize as plain values."""
    return [{k: float(v) if isinstance(v, np.floating) else v for k, v in e.items()} for e in entities]
