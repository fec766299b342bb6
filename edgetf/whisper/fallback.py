"""Robust long-form decoding: the decisions of transformers' ``WhisperGenerationMixin.generate`` (4.57)
for temperature fallback, no-speech skipping and prompts, as pure functions over token ids and scores.

Per 30-second window (:meth:`edgetf.whisper.seek.WhisperModel.windows` runs the model):

1. the decoder input (:func:`decoder_prompt`, transformers' ``_prepare_decoder_input_ids``): the
   language/task prompt, preceded by ``prompt_ids`` (``<|startofprev|>`` + text) or, with
   ``condition_on_prev_tokens``, by ``<|startofprev|>`` + the last ``max_target_positions // 2 - 1``
   tokens of the text decoded so far (the prompt counts as decoded text with
   ``prompt_condition_type="first-segment"``; with ``"all-segments"`` the prompt opens every window);
2. decoding at each temperature in turn (0 or None: greedy/beam; > 0: sampling, and beam search is off
   for the rest of the call, as in transformers) until one passes (:func:`judge`, ``_need_fallback``):
   the zlib compression ratio of the ids (with EOS) must not exceed ``compression_ratio_threshold`` and
   their average log-probability must not fall below ``logprob_threshold``; the last temperature's
   result is kept when none passes;
3. with ``no_speech_threshold``, a window whose average log-probability is below ``logprob_threshold``
   and whose <|nospeech|> probability (softmax of the unprocessed logits at <|startoftranscript|>, one
   extra teacher-forced decoder pass; with a one-token prompt, the first step's scores after the suppress
   rules, :class:`NoSpeechProbe`) is above the threshold is skipped: no segments, the seek moves a whole
   window;
4. conditioning on the window's text for the next one continues only while the accepted temperature
   is below 0.5.

The generated ids never contain the prompt: only decoded segments are output.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..generation.logits import log_softmax, softmax

# call options (transformers' ``generate`` arguments, plus edgetf's text prompt and seed)
ROBUST_OPTIONS = (
    "temperature",
    "compression_ratio_threshold",
    "logprob_threshold",
    "no_speech_threshold",
    "condition_on_prev_tokens",
    "prompt_ids",
    "prompt_condition_type",
    "initial_prompt",
    "prompt",
    "seed",
)
PROMPT_CONDITION_TYPES = ("first-segment", "all-segments")
# generation_config.json fields transformers reads as defaults of these options
CONFIG_DEFAULTS = (
    "compression_ratio_threshold",
    "logprob_threshold",
    "no_speech_threshold",
    "condition_on_prev_tokens",
)


@dataclass(frozen=True)
class Attempt:
    """One decoding of a window at one temperature and what transformers decides from it.

    compression_ratio / avg_logprob / no_speech_prob are None when their threshold is not set.
    """

    temperature: float | None
    compression_ratio: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    needs_fallback: bool
    skip: bool


@dataclass(frozen=True)
class RobustOptions:
    """The fallback, no-speech and prompt options of one call (see the module docstring)."""

    temperatures: tuple[float | None, ...] = (None,)
    compression_ratio_threshold: float | None = None
    logprob_threshold: float | None = None
    no_speech_threshold: float | None = None
    condition_on_prev_tokens: bool = False
    prompt_ids: tuple[int, ...] | None = None
    prompt_condition_type: str = "first-segment"
    prev_sot: int | None = None
    rng: np.random.Generator | None = None

    @classmethod
    def from_options(
        cls,
        opts: Mapping[str, Any],
        defaults: Mapping[str, Any],
        *,
        prev_sot: int | None,
        prompt_text_ids: Callable[[str], list[int]],
    ) -> RobustOptions:
        """Checked options; ``defaults`` are generation_config.json's values for :data:`CONFIG_DEFAULTS`."""

        def pick(name: str) -> Any:
            value = opts.get(name)
            return defaults.get(name) if value is None else value

        temperatures = _temperatures(opts.get("temperature"))
        thresholds = {
            name: _number(name, pick(name))
            for name in ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold")
        }
        if thresholds["no_speech_threshold"] is not None and thresholds["logprob_threshold"] is None:
            raise InvalidInputError(
                "no_speech_threshold needs logprob_threshold too (a window is skipped as silence when its average "
                "log-probability is below logprob_threshold and its no-speech probability above no_speech_threshold)"
            )
        condition = pick("condition_on_prev_tokens")
        if condition is not None and not isinstance(condition, (bool, np.bool_)):
            raise InvalidInputError(f"condition_on_prev_tokens must be True or False, got {condition!r}")
        condition_type = opts.get("prompt_condition_type") or PROMPT_CONDITION_TYPES[0]
        if condition_type not in PROMPT_CONDITION_TYPES:
            raise InvalidInputError(
                f"prompt_condition_type={condition_type!r}; use one of {list(PROMPT_CONDITION_TYPES)}"
            )
        if condition_type == "all-segments" and not condition:
            raise InvalidInputError("prompt_condition_type='all-segments' needs condition_on_prev_tokens=True")
        prompt = _prompt_ids(opts, prompt_text_ids)
        seed = opts.get("seed")
        if seed is not None and not (isinstance(seed, (int, np.integer, np.random.Generator)) and seed is not True):
            raise InvalidInputError(f"seed must be an int or a numpy.random.Generator, got {seed!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return cls(
            temperatures=temperatures,
            condition_on_prev_tokens=bool(condition),
            prompt_ids=prompt,
            prompt_condition_type=condition_type,
            prev_sot=prev_sot,
            rng=rng,
            **thresholds,
        )

    @property
    def plain(self) -> bool:
        """True when nothing here changes transformers' plain one-pass decoding of each window."""
        return (
            self.temperatures == (None,)
            and self.compression_ratio_threshold is None
            and self.logprob_threshold is None
            and self.no_speech_threshold is None
            and not self.condition_on_prev_tokens
            and self.prompt_ids is None
        )

    @property
    def wants_scores(self) -> bool:
        return self.logprob_threshold is not None

    def first_history(self) -> list[np.ndarray]:
        """The decoded text a first window is conditioned on: the prompt, for 'first-segment'."""
        if self.prompt_ids is None or self.prompt_condition_type != "first-segment":
            return []
        prompt = list(self.prompt_ids)
        if prompt and prompt[0] == self.prev_sot:
            prompt = prompt[1:]
        return [np.asarray(prompt, dtype=np.int64)]


def _temperatures(value: Any) -> tuple[float | None, ...]:
    if value is None:
        return (None,)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise InvalidInputError("temperature must be a number >= 0 or a non-empty tuple of them, got ()")
    for t in values:
        if not _is_number(t) or t < 0 or not math.isfinite(t):
            raise InvalidInputError(f"temperature must be a number >= 0 or a tuple of them (fallback), got {value!r}")
    return tuple(float(t) for t in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a number or None, got {value!r}")
    return float(value)


def _prompt_ids(opts: Mapping[str, Any], prompt_text_ids: Callable[[str], list[int]]) -> tuple[int, ...] | None:
    given = [name for name in ("prompt_ids", "initial_prompt", "prompt") if opts.get(name) is not None]
    if len(given) > 1:
        raise InvalidInputError(f"give one of prompt_ids, initial_prompt and prompt, not {given}")
    if not given:
        return None
    if given[0] != "prompt_ids":
        text = opts[given[0]]
        if not isinstance(text, str):
            raise InvalidInputError(f"{given[0]} must be a str, got {type(text).__name__}")
        return tuple(prompt_text_ids(text))
    ids = np.asarray(opts["prompt_ids"])
    if ids.ndim != 1 or ids.shape[0] == 0 or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
        raise InvalidInputError(
            "prompt_ids must be a non-empty 1-D sequence of token ids (e.g. from get_prompt_ids(text)), "
            f"got {str(opts['prompt_ids'])[:80]}"
        )
    return tuple(int(i) for i in ids)


# -- the decisions -----------------------------------------------------------------------------------------
def compression_ratio(tokens: Sequence[int] | np.ndarray, vocab_size: int) -> float:
    """Raw byte length / zlib-compressed length of the ids (transformers' ``_retrieve_compression_ratio``)."""
    width = int(math.log2(vocab_size) / 8) + 1
    data = b"".join(int(t).to_bytes(width, "little") for t in np.asarray(tokens).tolist())
    return len(data) / len(zlib.compress(data))


def avg_logprob(scores: Sequence[np.ndarray], tokens: np.ndarray, temperature: float | None) -> float:
    """Mean log-probability of ``tokens`` (EOS included) under the per-step processed ``scores``, undoing
    the temperature (transformers' ``_retrieve_avg_logprobs``; None counts as 0)."""
    rescale = temperature if temperature is not None and temperature > 0.0 else 1.0
    stacked = np.stack([np.asarray(s, dtype=np.float32) for s in scores])
    tokens = np.asarray(tokens)
    if stacked.shape[0] > tokens.shape[0]:
        stacked = stacked[: tokens.shape[0]]
    else:
        tokens = tokens[-stacked.shape[0] :]
    logprobs = log_softmax(stacked * np.float32(rescale))
    total = np.float32(0.0)
    for i in range(logprobs.shape[0]):
        total = np.float32(total + logprobs[i, int(tokens[i])])
    return float(total / np.float32(len(tokens)))


def judge(
    tokens: np.ndarray,
    scores: Sequence[np.ndarray],
    temperature: float | None,
    no_speech_prob: float | None,
    options: RobustOptions,
    vocab_size: int,
) -> Attempt:
    """Fallback needed? Skip as silence? (transformers' ``_need_fallback``); ``tokens`` end with EOS if
    the model generated it."""
    needs_fallback = skip = False
    ratio = logprob = None
    if options.compression_ratio_threshold is not None:
        ratio = compression_ratio(tokens, vocab_size)
        needs_fallback = ratio > options.compression_ratio_threshold
    if options.logprob_threshold is not None:
        logprob = avg_logprob(scores, tokens, temperature)
        needs_fallback = needs_fallback or logprob < options.logprob_threshold
    threshold = options.logprob_threshold
    if options.no_speech_threshold is not None and no_speech_prob is not None and logprob is not None:
        skip = threshold is not None and logprob < threshold and no_speech_prob > options.no_speech_threshold
        needs_fallback = needs_fallback and not skip
    return Attempt(temperature, ratio, logprob, no_speech_prob, needs_fallback, skip)


def decoder_prompt(
    init_tokens: Sequence[int],
    history: Sequence[np.ndarray],
    condition: bool,
    options: RobustOptions,
    timestamp_begin: int,
    max_target_positions: int,
) -> list[int]:
    """A window's decoder input ids (transformers' ``_prepare_decoder_input_ids`` for one row)."""
    init = [int(t) for t in init_tokens]
    if condition and history:
        if options.prompt_ids is not None and options.prompt_condition_type == "all-segments":
            head = list(options.prompt_ids)
        else:
            head = [options.prev_sot] if options.prev_sot is not None else []
        pieces = [seg[:-1] if len(seg) > 2 and seg[-2] >= timestamp_begin else seg for seg in history]
        previous = np.concatenate(pieces).astype(np.int64).tolist() if pieces else []
        cut = max_target_positions // 2 - 1
        return head + previous[-cut:] + init
    if options.prompt_ids is not None:
        return list(options.prompt_ids) + init
    return init


def keeps_conditioning(options: RobustOptions, temperature: float | None) -> bool:
    """Whether the next window is conditioned on this one's text, given the accepted temperature."""
    return options.condition_on_prev_tokens and (temperature is None or temperature < 0.5)


def no_speech_position(decoder_length: int, init_length: int) -> int:
    """The decoder position whose unprocessed logits give the no-speech probability: <|startoftranscript|>
    (transformers' ``WhisperNoSpeechDetection`` with a prompt of more than one token)."""
    return decoder_length - init_length


class NoSpeechProbe:
    """transformers' ``WhisperNoSpeechDetection`` for a one-token prompt (English-only models with
    timestamps): the probability of the no-speech token at the first generated position, read from the
    scores as the logits processors before it left them (suppressed tokens included); ``logprobs``: the
    scores are beam search's log-probabilities (fixed by the call's num_beams, as in transformers)."""

    def __init__(self, token: int, begin_index: int, logprobs: bool):
        self.token = int(token)
        self.begin_index = int(begin_index)
        self.logprobs = logprobs
        self.prob: float | None = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[1] == self.begin_index:
            row = scores[0].astype(np.float32)
            if self.logprobs:
                self.prob = float(np.exp(row[self.token]))
            else:
                self.prob = float(softmax(row[None])[0, self.token])
        return scores
