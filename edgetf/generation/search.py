"""The decode loops: greedy, sampling, beam search (and beam sampling), over a :class:`StepModel`.

They follow transformers' ``generate`` (``_sample`` and the vectorized ``_beam_search``) step for step,
so that the same logits give the same tokens: same processor order, same finished-row padding, same
beam bookkeeping (top 2*num_beams candidates, length-penalised finished beams, early-stopping
heuristic), same output layout and cropping.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import InvalidInputError
from .config import GenerationConfig
from .logits import build_processors, log_softmax, softmax
from .stopping import EosToken, MaxLength, StoppingCriteriaList, StopStrings

_BIG = np.float32(1.0e9)


class StepModel(Protocol):
    """What the loops need from a model; the KV cache lives inside it (see edgetf.generation.steps).

    prefill(input_ids, attention_mask) -> (rows, vocab) float32 logits of the last position, for the
        whole starting sequence (rows = the caller's batch, before beams/samples are expanded).
    step(input_ids, attention_mask) -> (rows, vocab) logits for one new token per row, input_ids
        (rows, 1); attention_mask is the full (rows, length) mask, or None for encoder-decoders.
    select(rows) -> None: keep cache row ``rows[i]`` as row i (expansion and beam reordering).
    """

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray: ...

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray: ...

    def select(self, rows: np.ndarray) -> None: ...


@dataclass
class GenerateOutput:
    """sequences: (batch * num_return_sequences, length) int64, as transformers' ``generate`` returns
    them: prompt (padding included) + new tokens for decoder-only models, decoder start + new tokens for
    encoder-decoders; finished rows padded. scores: per step, the processed scores (when asked).
    sequences_scores: beam search's final (length-penalised) scores. beam_indices: beam search's
    (rows, new tokens) row of ``scores`` each returned token came from (-1 past its end)."""

    sequences: np.ndarray
    prompt_length: int
    scores: list[np.ndarray] = field(default_factory=list)
    sequences_scores: np.ndarray | None = None
    beam_indices: np.ndarray | None = None

    @property
    def new_tokens(self) -> np.ndarray:
        return self.sequences[:, self.prompt_length :]


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise InvalidInputError(f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}")


def prepare_lengths(
    config: GenerationConfig,
    input_length: int,
    *,
    max_length_given: bool = False,
    max_positions: int | None = None,
) -> GenerationConfig:
    """Final max_length/min_length as ``generate`` computes them; validates the config.

    max_length_given: the caller passed max_length explicitly for this call (transformers only
    applies its "20 new tokens" default otherwise). max_positions: the decoder's context window;
    generation stops there (transformers would fail with an index error past it).
    """
    config = config.copy()
    config.validate()
    if config.max_new_tokens is not None:
        config.max_length = config.max_new_tokens + input_length
    elif not max_length_given and config.max_length == GenerationConfig().max_length:
        config.max_length = config.max_length + input_length
        if max_positions is not None:
            config.max_length = min(config.max_length, max_positions)
    if config.min_new_tokens is not None:
        config.min_length = config.min_new_tokens + input_length
    if input_length >= config.max_length:
        raise InvalidInputError(
            f"the input is {input_length} tokens but max_length is {config.max_length}; raise max_length "
            "or set max_new_tokens"
        )
    if max_positions is not None:
        if input_length >= max_positions:
            raise InvalidInputError(
                f"the input is {input_length} tokens, which fills the model's context window of {max_positions} "
                "positions: no token can be generated; shorten the input (or use truncation)"
            )
        if config.max_length > max_positions:
            warnings.warn(
                f"max_length {config.max_length} is beyond the model's {max_positions} positions; generation "
                f"stops at {max_positions} tokens",
                stacklevel=3,
            )
            config.max_length = max_positions
    return config


def generate(
    model: StepModel,
    input_ids: np.ndarray,
    config: GenerationConfig,
    *,
    attention_mask: np.ndarray | None = None,
    max_length_given: bool = False,
    max_positions: int | None = None,
    logits_processors: Iterable[Callable[[np.ndarray, np.ndarray], np.ndarray]] = (),
    stopping_criteria: Iterable[Callable[[np.ndarray], np.ndarray]] = (),
    decode: Callable[[list[int]], str] | None = None,
    seed: int | np.random.Generator | None = None,
    streamer: Callable[[np.ndarray], None] | None = None,
    output_scores: bool = False,
) -> GenerateOutput:
    """Generate from ``input_ids`` (batch, length) with ``model``; see :class:`GenerateOutput`.

    attention_mask: decoder-only padding mask (left padding), None for encoder-decoders.
    decode: token ids -> text, needed for ``stop_strings``. streamer: called after each step with the
    chosen token of every row (greedy/sampling only; beam search has no stable per-step output).
    """
    loop = _Loop(
        model, input_ids, config, attention_mask, max_length_given, max_positions, logits_processors,
        stopping_criteria, decode, seed, output_scores,
    )  # fmt: skip
    if loop.config.num_beams > 1:
        return _beam_search(
            model, loop.input_ids, loop.mask, loop.config, loop.processors, loop.stops, loop.rng, output_scores
        )
    steps = loop.sample()
    while True:
        try:
            tokens = next(steps)
        except StopIteration as done:
            return done.value
        if streamer is not None:
            streamer(tokens)


def generate_tokens(
    model: StepModel,
    input_ids: np.ndarray,
    config: GenerationConfig,
    *,
    attention_mask: np.ndarray | None = None,
    max_length_given: bool = False,
    max_positions: int | None = None,
    logits_processors: Iterable[Callable[[np.ndarray, np.ndarray], np.ndarray]] = (),
    stopping_criteria: Iterable[Callable[[np.ndarray], np.ndarray]] = (),
    decode: Callable[[list[int]], str] | None = None,
    seed: int | np.random.Generator | None = None,
) -> Generator[np.ndarray, None, GenerateOutput]:
    """:func:`generate` as a generator (greedy and sampling): yields each step's chosen token per row,
    (rows,) int64, as it is chosen; returns the :class:`GenerateOutput`. Closing it stops generation."""
    loop = _Loop(
        model, input_ids, config, attention_mask, max_length_given, max_positions, logits_processors,
        stopping_criteria, decode, seed, False,
    )  # fmt: skip
    if loop.config.num_beams > 1:
        raise InvalidInputError("token-by-token generation supports greedy and sampling (num_beams=1)")
    return (yield from loop.sample())


class _Loop:
    """One generation's validated inputs, final lengths, processors and stopping criteria."""

    def __init__(
        self,
        model: StepModel,
        input_ids: np.ndarray,
        config: GenerationConfig,
        attention_mask: np.ndarray | None,
        max_length_given: bool,
        max_positions: int | None,
        logits_processors: Iterable[Callable[[np.ndarray, np.ndarray], np.ndarray]],
        stopping_criteria: Iterable[Callable[[np.ndarray], np.ndarray]],
        decode: Callable[[list[int]], str] | None,
        seed: int | np.random.Generator | None,
        output_scores: bool,
    ):
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if input_ids.ndim != 2 or input_ids.shape[0] == 0:
            raise InvalidInputError(f"input_ids must be a non-empty (batch, length) array, got shape {input_ids.shape}")
        config = prepare_lengths(
            config, input_ids.shape[1], max_length_given=max_length_given, max_positions=max_positions
        )
        self.processors = build_processors(config, input_ids.shape[1], logits_processors)
        stops = StoppingCriteriaList([MaxLength(config.max_length)])
        if config.stop_strings is not None:
            if decode is None:
                raise InvalidInputError("stop_strings needs a tokenizer to decode with; none was given")
            stops.append(StopStrings(config.stop_strings, decode))
        if config.eos_ids:
            stops.append(EosToken(config.eos_ids))
        stops.extend(stopping_criteria)
        self.model, self.input_ids, self.config, self.stops = model, input_ids, config, stops
        self.rng = as_rng(seed)
        self.mask = None if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        self.output_scores = output_scores

    def sample(self) -> Generator[np.ndarray, None, GenerateOutput]:
        return _sample(
            self.model, self.input_ids, self.mask, self.config, self.processors, self.stops, self.rng,
            self.output_scores,
        )  # fmt: skip


def _expand(model: StepModel, logits: np.ndarray, arrays: Sequence[np.ndarray | None], times: int) -> tuple:
    if times == 1:
        return (logits, *arrays)
    rows = np.repeat(np.arange(logits.shape[0]), times)
    model.select(rows)
    return (logits[rows], *(None if a is None else a[rows] for a in arrays))


def sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from (rows, vocab) probabilities."""
    cdf = np.cumsum(probs.astype(np.float64), axis=-1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)


def _sample(
    model: StepModel,
    input_ids: np.ndarray,
    mask: np.ndarray | None,
    config: GenerationConfig,
    processors: Callable[[np.ndarray, np.ndarray], np.ndarray],
    stops: StoppingCriteriaList,
    rng: np.random.Generator,
    output_scores: bool,
) -> Generator[np.ndarray, None, GenerateOutput]:
    """Greedy search and sampling; yields each step's tokens (rows,) after appending them."""
    prompt_length = input_ids.shape[1]
    logits = model.prefill(input_ids, mask)
    logits, input_ids, mask = _expand(model, logits, (input_ids, mask), config.num_return_sequences)
    rows = input_ids.shape[0]
    unfinished = np.ones(rows, dtype=bool)
    has_eos = bool(config.eos_ids)
    pad = config.pad_id
    if has_eos and pad is None:
        raise InvalidInputError("generation with an eos_token_id needs a pad_token_id to fill finished rows")
    scores_out: list[np.ndarray] = []
    while True:
        scores = processors(input_ids, logits.astype(np.float32, copy=False))
        if output_scores:
            scores_out.append(scores)
        if config.do_sample:
            next_tokens = sample_rows(softmax(scores), rng)
        else:
            next_tokens = np.argmax(scores, axis=-1).astype(np.int64)
        if has_eos:
            next_tokens = np.where(unfinished, next_tokens, pad)
        input_ids = np.concatenate([input_ids, next_tokens[:, None]], axis=1)
        if mask is not None:
            mask = np.concatenate([mask, np.ones((rows, 1), dtype=mask.dtype)], axis=1)
        yield next_tokens
        unfinished &= ~stops(input_ids)
        if not unfinished.any():
            break
        logits = model.step(next_tokens[:, None], mask)
    return GenerateOutput(input_ids, prompt_length, scores_out)


def _topk(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (ties: lower index first)."""
    if k >= values.shape[-1]:
        return np.argsort(-values, axis=-1, kind="stable")
    part = np.argpartition(-values, k - 1, axis=-1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(values, part, axis=-1)), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def _gather(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """array (batch, beams, ...) indexed along axis 1 by index (batch, n)."""
    batch = np.arange(array.shape[0])[:, None]
    return array[batch, index]


def _beam_search(
    model: StepModel,
    input_ids: np.ndarray,
    mask: np.ndarray | None,
    config: GenerationConfig,
    processors: Callable[[np.ndarray, np.ndarray], np.ndarray],
    stops: StoppingCriteriaList,
    rng: np.random.Generator,
    output_scores: bool,
) -> GenerateOutput:
    batch, prompt_length = input_ids.shape
    beams = config.num_beams
    max_length = config.max_length
    eos = config.eos_ids
    length_penalty = float(config.length_penalty)
    early_stopping = config.early_stopping

    logits = model.prefill(input_ids, mask)
    logits, input_ids, mask = _expand(model, logits, (input_ids, mask), beams)
    vocab = logits.shape[-1]
    keep = max(2, 1 + len(eos)) * beams
    top_beam_mask = np.zeros(keep, dtype=bool)
    top_beam_mask[:beams] = True
    # transformers fills unused positions with `pad or eos[0]` (a pad id of 0 falls through to eos), or -1
    fill = (config.pad_id or eos[0]) if eos else -1

    running = np.full((batch, beams, max_length), fill, dtype=np.int64)
    running[:, :, :prompt_length] = input_ids.reshape(batch, beams, prompt_length)
    sequences = running.copy()
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = -_BIG
    beam_scores = np.full((batch, beams), -_BIG, dtype=np.float32)
    finished = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    running_indices = np.full((batch, beams, max_length - prompt_length), -1, dtype=np.int64)
    beam_indices = running_indices.copy()
    batch_offset = np.arange(batch)[:, None] * beams
    scores_out: list[np.ndarray] = []
    cur_len = prompt_length

    while True:
        flat = running[:, :, :cur_len].reshape(batch * beams, cur_len)
        log_probs = processors(flat, log_softmax(logits))
        if output_scores:
            scores_out.append(log_probs)
        log_probs = log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]
        log_probs = log_probs.reshape(batch, beams * vocab)

        # c. the top `keep` continuations over all beams
        if config.do_sample:
            top_idx = np.stack([_draw_without_replacement(softmax(row[None])[0], keep, rng) for row in log_probs])
        else:
            top_idx = _topk(log_probs, keep)
        top_log_probs = np.take_along_axis(log_probs, top_idx, axis=1)
        from_beam = top_idx // vocab
        top_running_indices = _gather(running_indices, from_beam)
        top_running = _gather(running, from_beam)
        top_running[:, :, cur_len] = top_idx % vocab
        top_running_indices[:, :, cur_len - prompt_length] = from_beam + batch_offset

        # d. which continuations finished
        hits = stops(top_running[:, :, : cur_len + 1].reshape(batch * keep, cur_len + 1)).reshape(batch, keep)

        # e. the best unfinished continuations keep running
        top_running_log_probs = top_log_probs + hits.astype(np.float32) * -_BIG
        next_idx = _topk(top_running_log_probs, beams)
        running = _gather(top_running, next_idx)
        running_scores = _gather(top_running_log_probs, next_idx)
        running_indices = _gather(top_running_indices, next_idx)

        # f. finished continuations among the top `beams` compete with the finished ones so far
        just_finished = hits & top_beam_mask[None, :]
        penalised = top_log_probs / np.float32(float(cur_len + 1 - prompt_length) ** length_penalty)
        full = np.all(finished, axis=-1, keepdims=True) & (early_stopping is True)
        penalised = penalised + full.astype(np.float32) * -_BIG
        penalised = penalised + (~improvable).astype(np.float32) * -_BIG
        penalised = penalised + (~just_finished).astype(np.float32) * -_BIG
        merged_scores = np.concatenate([beam_scores, penalised], axis=1)
        best = _topk(merged_scores, beams)
        sequences = _gather(np.concatenate([sequences, top_running], axis=1), best)
        beam_scores = _gather(merged_scores, best)
        beam_indices = _gather(np.concatenate([beam_indices, top_running_indices], axis=1), best)
        finished = _gather(np.concatenate([finished, just_finished], axis=1), best)

        # g. cache rows follow their beams; stop when nothing can improve
        reorder = running_indices[:, :, cur_len - prompt_length].reshape(-1)
        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_length
        else:
            best_length = cur_len - prompt_length
        best_running = running_scores[:, :1] / np.float32(float(best_length) ** length_penalty)
        worst_finished = np.where(finished, np.min(beam_scores, axis=1, keepdims=True), -_BIG)
        improvable = improvable & np.any(best_running > worst_finished, axis=-1, keepdims=True)
        open_beam = not (bool(np.all(finished)) and early_stopping is True)
        if not (bool(np.any(improvable)) and open_beam and not bool(np.all(hits))):
            break
        model.select(reorder)
        if mask is not None:
            mask = np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=mask.dtype)], axis=1)
        logits = model.step(running[:, :, cur_len - 1].reshape(-1, 1), mask)

    n = config.num_return_sequences
    sequences = sequences[:, :n].reshape(batch * n, max_length)
    final_scores = beam_scores[:, :n].reshape(-1)
    chosen_indices = beam_indices[:, :n].reshape(batch * n, -1)
    generated = int((chosen_indices + 1).astype(bool).sum(axis=1).max())
    return GenerateOutput(
        sequences[:, : prompt_length + generated],
        prompt_length,
        scores_out,
        final_scores,
        chosen_indices[:, :generated],
    )


def _draw_without_replacement(probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices drawn with probability ``probs`` (the exponential-race trick torch also uses:
    zero-probability entries come last instead of raising)."""
    keys = probs.astype(np.float64) / rng.exponential(size=probs.shape[0])
    return _topk(keys[None, :], k)[0]
