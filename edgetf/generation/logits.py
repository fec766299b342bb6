"""Logits processors: small composable objects ``(input_ids, scores) -> scores`` over numpy arrays.

Each one does what the transformers processor of the same role does, in the same order when built by
:func:`build_processors`. ``input_ids`` is (rows, length) int64 — the whole sequence so far (prompt and
padding included for decoder-only models, the decoder sequence for encoder-decoders); ``scores`` is
(rows, vocab) float32 and is never modified in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from .. import numeric
from ..errors import InvalidInputError
from .config import GenerationConfig

NEG_INF = np.float32(-np.inf)


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


class LogitsProcessorList(list):
    """Applies its processors in order."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


def log_softmax(x: np.ndarray) -> np.ndarray:
    """edgetf.numeric.log_softmax of the scores as float32 (as transformers computes them)."""
    return numeric.log_softmax(x.astype(np.float32, copy=False))


def softmax(x: np.ndarray) -> np.ndarray:
    """edgetf.numeric.softmax of the scores as float32."""
    return numeric.softmax(x.astype(np.float32, copy=False))


def _id_mask(vocab: int, ids: Iterable[int]) -> np.ndarray:
    mask = np.zeros(vocab, dtype=bool)
    ids = [i for i in ids if 0 <= i < vocab]
    mask[ids] = True
    return mask


# -- length and special-token processors -----------------------------------------------------------
class MinLength:
    """EOS forbidden while the sequence (prompt included, for decoder-only models) is shorter than min_length."""

    def __init__(self, min_length: int, eos_ids: Sequence[int]):
        self.min_length = int(min_length)
        self.eos_ids = list(eos_ids)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] < self.min_length:
            return np.where(_id_mask(scores.shape[-1], self.eos_ids), NEG_INF, scores)
        return scores


class MinNewTokens:
    """EOS forbidden until ``min_new_tokens`` tokens were generated after ``prompt_length``."""

    def __init__(self, prompt_length: int, min_new_tokens: int, eos_ids: Sequence[int]):
        self.prompt_length = int(prompt_length)
        self.min_new_tokens = int(min_new_tokens)
        self.eos_ids = list(eos_ids)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] - self.prompt_length < self.min_new_tokens:
            return np.where(_id_mask(scores.shape[-1], self.eos_ids), NEG_INF, scores)
        return scores


class ForcedBOS:
    """The first generated token (sequence length 1) is ``token_id``."""

    def __init__(self, token_id: int):
        self.token_id = int(token_id)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == 1:
            out = np.full_like(scores, NEG_INF)
            out[:, self.token_id] = 0
            return out
        return scores


class ForcedEOS:
    """The last token before max_length is an EOS."""

    def __init__(self, max_length: int, eos_ids: int | Sequence[int]):
        self.max_length = int(max_length)
        self.eos_ids = [int(eos_ids)] if isinstance(eos_ids, (int, np.integer)) else [int(e) for e in eos_ids]

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == self.max_length - 1:
            out = np.full_like(scores, NEG_INF)
            out[:, self.eos_ids] = 0
            return out
        return scores


class SuppressTokens:
    def __init__(self, token_ids: Iterable[int]):
        self.token_ids = list(token_ids)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.where(_id_mask(scores.shape[-1], self.token_ids), NEG_INF, scores)


class SuppressTokensAtBegin:
    """Suppress ``token_ids`` only when the sequence length equals ``begin_index``."""

    def __init__(self, token_ids: Iterable[int], begin_index: int):
        self.token_ids = list(token_ids)
        self.begin_index = int(begin_index)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == self.begin_index:
            return np.where(_id_mask(scores.shape[-1], self.token_ids), NEG_INF, scores)
        return scores


# -- repetition ---------------------------------------------------------------------------------------
class RepetitionPenalty:
    """Scores of tokens already in the sequence: divided by ``penalty`` if positive, multiplied if negative."""

    def __init__(self, penalty: float):
        if not penalty > 0:
            raise InvalidInputError(f"repetition_penalty must be > 0, got {penalty!r}")
        self.penalty = np.float32(penalty)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        rows = np.arange(scores.shape[0])[:, None]
        picked = scores[rows, input_ids]
        penalized = np.where(picked < 0, picked * self.penalty, picked / self.penalty)
        out = scores.copy()
        out[rows, input_ids] = penalized
        return out


class NoRepeatNGram:
    """Tokens that would repeat an n-gram already in the sequence get -inf."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise InvalidInputError(f"no_repeat_ngram_size must be a positive integer, got {ngram_size!r}")
        self.n = ngram_size

    def banned(self, tokens: Sequence[int]) -> list[int]:
        n, length = self.n, len(tokens)
        if length + 1 < n:
            return []
        prefix = tuple(tokens[length + 1 - n :]) if n > 1 else ()
        found = []
        for start in range(length - n + 1):
            if tuple(tokens[start : start + n - 1]) == prefix:
                found.append(tokens[start + n - 1])
        return found

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = scores.copy()
        for row, tokens in enumerate(input_ids.tolist()):
            banned = self.banned(tokens)
            if banned:
                out[row, banned] = NEG_INF
        return out


class SequenceBias:
    """Adds a bias to the token that would complete each listed sequence (length-1 sequences: always)."""

    def __init__(self, bias: dict[tuple[int, ...], float]):
        self.bias = dict(bias)
        self._single: np.ndarray | None = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        vocab = scores.shape[-1]
        if self._single is None or self._single.shape[0] != vocab:
            too_big = [t for seq in self.bias for t in seq if t >= vocab]
            if too_big:
                raise InvalidInputError(
                    f"the model vocabulary has {vocab} tokens; these ids are out of range: {too_big}"
                )
            self._single = np.zeros(vocab, dtype=np.float32)
            for seq, value in self.bias.items():
                if len(seq) == 1:
                    self._single[seq[0]] = value
        bias = np.broadcast_to(self._single, scores.shape).copy()
        for seq, value in self.bias.items():
            if len(seq) == 1 or len(seq) > input_ids.shape[1]:
                continue
            prefix = np.asarray(seq[:-1], dtype=input_ids.dtype)
            match = np.all(input_ids[:, -len(prefix) :] == prefix, axis=1)
            bias[:, seq[-1]] += np.where(match, np.float32(value), np.float32(0.0))
        return scores + bias


class NoBadWords(SequenceBias):
    """Sequences in ``bad_words_ids`` can never be completed (EOS-only entries are ignored)."""

    def __init__(self, bad_words_ids: list[list[int]], eos_ids: Sequence[int] = ()):
        kept = [seq for seq in bad_words_ids if not any(seq == [e] for e in eos_ids)]
        super().__init__({tuple(seq): float("-inf") for seq in kept})


class InfNanRemove:
    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = np.where(np.isnan(scores), np.float32(0.0), scores)
        big = np.finfo(np.float32).max
        out = np.where(out == np.inf, big, out)
        return np.where(out == -np.inf, np.finfo(np.float32).min, out).astype(np.float32)


class LogitNormalization:
    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return log_softmax(scores)


# -- sampling warpers ----------------------------------------------------------------------------------
class Temperature:
    def __init__(self, temperature: float):
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise InvalidInputError(f"temperature must be a number > 0, got {temperature!r}")
        self.temperature = np.float32(temperature)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return scores / self.temperature


class TopK:
    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or top_k <= 0:
            raise InvalidInputError(f"top_k must be a positive integer, got {top_k!r}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        k = min(self.top_k, scores.shape[-1])
        kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]
        return np.where(scores < kth, NEG_INF, scores)


def _sorted_mask_back(order: np.ndarray, sorted_remove: np.ndarray) -> np.ndarray:
    remove = np.zeros_like(sorted_remove)
    np.put_along_axis(remove, order, sorted_remove, axis=-1)
    return remove


class TopP:
    """Keep the smallest set of most likely tokens whose probability reaches ``top_p``."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not (isinstance(top_p, (int, float)) and 0.0 <= top_p <= 1.0):
            raise InvalidInputError(f"top_p must be a number in [0, 1], got {top_p!r}")
        self.top_p = float(top_p)
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        order = np.argsort(scores, axis=-1, kind="stable")  # ascending
        ordered = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(softmax(ordered), axis=-1)
        remove = cumulative <= np.float32(1 - self.top_p)
        remove[:, -self.min_tokens_to_keep :] = False
        return np.where(_sorted_mask_back(order, remove), NEG_INF, scores)


class MinP:
    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not (isinstance(min_p, (int, float)) and 0.0 <= min_p <= 1.0):
            raise InvalidInputError(f"min_p must be a number in [0, 1], got {min_p!r}")
        self.min_p = np.float32(min_p)
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        probs = softmax(scores)
        remove = probs < self.min_p * probs.max(axis=-1, keepdims=True)
        order = np.argsort(-scores, axis=-1, kind="stable")
        sorted_remove = np.take_along_axis(remove, order, axis=-1)
        sorted_remove[:, : self.min_tokens_to_keep] = False
        return np.where(_sorted_mask_back(order, sorted_remove), NEG_INF, scores)


class Typical:
    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        if not (isinstance(mass, (int, float)) and 0.0 < mass < 1.0):
            raise InvalidInputError(f"typical_p must be a number in (0, 1), got {mass!r}")
        self.mass = np.float32(mass)
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        normalized = log_softmax(scores)
        p = np.exp(normalized)
        entropy = -np.nansum(normalized * p, axis=-1, keepdims=True)
        shifted = np.abs(-normalized - entropy)
        order = np.argsort(shifted, axis=-1, kind="stable")
        sorted_shifted = np.take_along_axis(shifted, order, axis=-1)
        cumulative = np.cumsum(softmax(np.take_along_axis(scores, order, axis=-1)), axis=-1)
        last = np.minimum((cumulative < self.mass).sum(axis=1), sorted_shifted.shape[-1] - 1)
        remove = sorted_shifted > np.take_along_axis(sorted_shifted, last[:, None], axis=1)
        remove[:, : self.min_tokens_to_keep] = False
        return np.where(_sorted_mask_back(order, remove), NEG_INF, scores)


# -- assembly -------------------------------------------------------------------------------------------
def build_processors(
    config: GenerationConfig,
    prompt_length: int,
    extra: Iterable[Callable[[np.ndarray, np.ndarray], np.ndarray]] = (),
) -> LogitsProcessorList:
    """The processors ``generate`` would build for ``config``, in transformers' order.

    prompt_length: the length of the (decoder) input the search starts from. ``config.max_length``
    must already be final (see :func:`edgetf.generation.search.prepare_lengths`). ``extra`` processors
    (e.g. Whisper's timestamp rules) run after the built-in ones and before the sampling warpers.
    """
    eos = config.eos_ids
    out = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size:
        out.append(NoRepeatNGram(int(config.no_repeat_ngram_size)))
    if config.bad_words_ids is not None:
        out.append(NoBadWords(config.bad_words_ids, eos))
    if config.min_length and eos:
        out.append(MinLength(config.min_length, eos))
    if config.min_new_tokens and eos:
        out.append(MinNewTokens(prompt_length, config.min_new_tokens, eos))
    if config.forced_bos_token_id is not None:
        out.append(ForcedBOS(config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        out.append(ForcedEOS(config.max_length, config.forced_eos_token_id))
    if config.remove_invalid_values:
        out.append(InfNanRemove())
    if config.suppress_tokens is not None:
        out.append(SuppressTokens(config.suppress_tokens))
    if config.begin_suppress_tokens is not None:
        begin = prompt_length if (prompt_length > 1 or config.forced_bos_token_id is None) else prompt_length + 1
        out.append(SuppressTokensAtBegin(config.begin_suppress_tokens, begin))
    out.extend(extra)
    if config.do_sample:
        keep = (len(eos) + 1 if eos else 2) if config.num_beams > 1 else 1
        if config.temperature is not None and config.temperature != 1.0:
            out.append(Temperature(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            out.append(TopK(config.top_k, keep))
        if config.top_p is not None and config.top_p < 1.0:
            out.append(TopP(config.top_p, keep))
        if config.min_p is not None:
            out.append(MinP(config.min_p, keep))
        if config.typical_p is not None and config.typical_p < 1.0:
            out.append(Typical(config.typical_p, keep))
    if config.renormalize_logits:
        out.append(LogitNormalization())
    return out
