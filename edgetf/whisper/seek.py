"""The seek loop of transformers' ``WhisperForConditionalGeneration.generate`` over :mod:`edgetf.generation`.

``generate`` in transformers 4.57 always runs Whisper as a loop over 30-second windows ("seek"):

1. the prompt (:func:`edgetf.whisper.tokens.prompt_tokens`) is built once, detecting the language from
   the first window when a multilingual model is given none;
2. each window is encoded and decoded with the generation config, plus Whisper's logits processors:
   ``begin_suppress_tokens`` at the first position, ``suppress_tokens`` everywhere, and with timestamps
   the timestamp rules (:class:`TimestampRules`);
3. the generated ids are cut into segments at consecutive timestamp pairs; when the last segment is
   unfinished the next window starts at its last timestamp, otherwise at the end of this window.

Short audio (one window) without timestamps is one pass. Long audio (more than 3000 feature frames,
i.e. > 30 s without ``chunk_length_s``) runs the loop over the whole spectrogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BundleError, InvalidInputError
from ..generation import GenerationConfig, Seq2SeqDecoder, generate
from ..generation.logits import NEG_INF, SuppressTokens, SuppressTokensAtBegin, log_softmax, softmax
from ..session import Session
from .fallback import (
    Attempt,
    NoSpeechProbe,
    RobustOptions,
    decoder_prompt,
    judge,
    keeps_conditioning,
    no_speech_position,
)
from .tokens import WhisperSettings, prompt_tokens


class TimestampRules:
    """transformers' ``WhisperTimeStampLogitsProcessor``.

    <|notimestamps|> is never generated; timestamps come in pairs (after a single timestamp only
    another timestamp or EOS may follow, after a pair only text); timestamps never decrease; the first
    generated token is a timestamp no later than ``max_initial_timestamp_index``; and when the total
    probability of the timestamps beats every single text token, a timestamp is forced.
    """

    def __init__(self, no_timestamps_id: int, eos_id: int, begin_index: int, max_initial_index: int | None):
        self.no_timestamps_id = int(no_timestamps_id)
        self.timestamp_begin = self.no_timestamps_id + 1
        self.eos_id = int(eos_id)
        self.begin_index = int(begin_index)
        self.max_initial_index = max_initial_index

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        tb = self.timestamp_begin
        out = scores.copy()
        out[:, self.no_timestamps_id] = NEG_INF
        for k in range(input_ids.shape[0]):
            sampled = input_ids[k, self.begin_index :]
            last_ts = sampled.shape[0] >= 1 and sampled[-1] >= tb
            penultimate_ts = sampled.shape[0] < 2 or sampled[-2] >= tb
            if last_ts:
                if penultimate_ts:
                    out[k, tb:] = NEG_INF
                else:
                    out[k, : self.eos_id] = NEG_INF
            stamps = sampled[sampled >= tb]
            if stamps.shape[0] > 0:
                floor = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
                out[k, tb:floor] = NEG_INF
        if input_ids.shape[1] == self.begin_index:
            out[:, :tb] = NEG_INF
            if self.max_initial_index is not None:
                out[:, tb + self.max_initial_index + 1 :] = NEG_INF
        logprobs = log_softmax(out)
        for k in range(input_ids.shape[0]):
            with np.errstate(divide="ignore"):
                ts_mass = _logsumexp(logprobs[k, tb:])
            if ts_mass > logprobs[k, :tb].max():
                out[k, :tb] = NEG_INF
        return out


def _logsumexp(x: np.ndarray) -> np.float32:
    peak = x.max()
    if not np.isfinite(peak):
        return np.float32(peak)
    return np.float32(peak + np.log(np.sum(np.exp(x - peak))))


def split_segments(
    seq: np.ndarray, timestamp_begin: int, window_frames: int, input_stride: int
) -> tuple[list[np.ndarray], int]:
    """(segments, frames to advance) for one window's generated ids (transformers' ``_retrieve_segment``)."""
    is_ts = seq >= timestamp_begin
    single_ending = is_ts[-2:].tolist() == [False, True]
    cuts = (np.nonzero(is_ts[:-1] & is_ts[1:])[0] + 1).tolist()
    if not cuts:
        return [seq], window_frames
    if single_ending:
        cuts.append(len(seq))
    else:
        cuts[-1] += 1
    segments, last = [], 0
    for cut in cuts:
        segments.append(seq[last:cut])
        last = cut
    if single_ending:
        return segments, window_frames
    return segments, int(seq[last - 2] - timestamp_begin) * input_stride


@dataclass(frozen=True)
class Window:
    """One decoded 30-second window of the seek loop: feature frames ``start``..``end`` (where the next
    window starts) of ``total``, and its generated ids cut into segments (prompt and EOS removed)."""

    start: int
    end: int
    total: int
    segments: list[np.ndarray]
    attempts: tuple[Attempt, ...] = ()  # with robust options: each temperature tried and its decisions
    decoder_ids: tuple[int, ...] = ()  # with robust options: the decoder input (prompt, previous text)
    # what word timestamps align (edgetf.whisper.alignment): the window's encoder output, and the decoder
    # input (input_length ids) followed by every generated id, EOS included
    hidden: np.ndarray | None = field(default=None, repr=False, compare=False)
    sequence: np.ndarray | None = field(default=None, repr=False, compare=False)
    input_length: int = 0

    @property
    def skipped(self) -> bool:
        """True when the window was dropped as no speech (``no_speech_threshold``)."""
        return bool(self.attempts) and self.attempts[-1].skip


class WhisperModel:
    """Encoder + merged decoder sessions of a Whisper bundle and the seek loop over a spectrogram."""

    def __init__(self, encoder: Session, decoder: Session, config: Mapping[str, Any]):
        self.encoder = encoder
        self.decoder = decoder
        self.config = dict(config)
        self.max_source_positions = int(self.config.get("max_source_positions", 1500))
        self.max_target_positions = int(self.config.get("max_target_positions", 448))
        self.input_stride = 2  # the encoder's two convolutions: stride 1 then 2
        self.window_frames = self.input_stride * self.max_source_positions

    def encode(self, features: np.ndarray) -> np.ndarray:
        """(batch, mels, 3000) -> encoder hidden states."""
        return self.encoder.run({"input_features": features.astype(np.float32, copy=False)})["last_hidden_state"]

    def detect_language(self, hidden: np.ndarray, start_id: int, lang_ids: list[int]) -> np.ndarray:
        """The language token with the highest logit after <|startoftranscript|>, per row."""
        return self.detect_language_with_cache(hidden, start_id, lang_ids)[0]

    def detect_language_with_cache(
        self, hidden: np.ndarray, start_id: int, lang_ids: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """:meth:`detect_language` and the cross-attention cache its decoder pass computed from ``hidden``
        (the transcription of the same window reuses it instead of computing it again)."""
        step = Seq2SeqDecoder(self.decoder, hidden, None, self.config)
        logits = step.prefill(np.full((hidden.shape[0], 1), start_id, dtype=np.int64))
        ids = np.asarray(lang_ids)
        return ids[np.argmax(logits[:, ids], axis=-1)], step.encoder_cache

    def window(self, features: np.ndarray, seek: int, frames: int) -> np.ndarray:
        piece = features[:, seek : seek + frames]
        if piece.shape[1] < self.window_frames:
            piece = np.pad(piece, ((0, 0), (0, self.window_frames - piece.shape[1])))
        return piece

    def run(
        self,
        features: np.ndarray,
        first_hidden: np.ndarray,
        gen: GenerationConfig,
        *,
        settings: WhisperSettings,
        language: str | None,
        task: str | None,
        return_timestamps: bool,
        max_length_given: bool = False,
        robust: RobustOptions | None = None,
    ) -> np.ndarray:
        """Build the prompt (detecting the language from ``first_hidden`` when needed), then decode every
        window: the generated ids of the spectrogram (mels, frames), prompt and EOS removed, concatenated."""
        windows = self.run_windows(
            features,
            first_hidden,
            gen,
            settings=settings,
            language=language,
            task=task,
            return_timestamps=return_timestamps,
            max_length_given=max_length_given,
            robust=robust,
        )
        pieces = [piece for window in windows for piece in window.segments]
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)

    def prompt(
        self,
        first_hidden: np.ndarray,
        gen: GenerationConfig,
        *,
        settings: WhisperSettings,
        language: str | None,
        task: str | None,
        return_timestamps: bool,
    ) -> list[int]:
        """The decoder prompt, detecting the language from ``first_hidden`` when the model needs one."""
        return self.prompt_and_cache(
            first_hidden, gen, settings=settings, language=language, task=task, return_timestamps=return_timestamps
        )[0]

    def prompt_and_cache(
        self,
        first_hidden: np.ndarray,
        gen: GenerationConfig,
        *,
        settings: WhisperSettings,
        language: str | None,
        task: str | None,
        return_timestamps: bool,
    ) -> tuple[list[int], dict[str, Any] | None]:
        """:meth:`prompt`, and the cross-attention cache of ``first_hidden`` when language detection made one."""
        start = gen.decoder_start_token_id
        if start is None:
            raise BundleError("generation_config.json has no decoder_start_token_id (<|startoftranscript|>)")
        lang_ids = sorted((settings.lang_to_id or {}).values())
        made: list[dict[str, Any]] = []

        def detect() -> int:
            ids, cache = self.detect_language_with_cache(first_hidden, int(start), lang_ids)
            made.append(cache)
            return int(ids[0])

        prompt = prompt_tokens(
            settings, int(start), language=language, task=task, return_timestamps=return_timestamps, detect=detect
        )
        return prompt, (made[0] if made else None)

    def run_windows(
        self,
        features: np.ndarray,
        first_hidden: np.ndarray,
        gen: GenerationConfig,
        *,
        settings: WhisperSettings,
        language: str | None,
        task: str | None,
        return_timestamps: bool,
        max_length_given: bool = False,
        robust: RobustOptions | None = None,
    ) -> Iterator[Window]:
        """:meth:`run` one decoded :class:`Window` at a time (for progress, cancellation and streaming)."""
        prompt, first_cache = self.prompt_and_cache(
            first_hidden, gen, settings=settings, language=language, task=task, return_timestamps=return_timestamps
        )
        return self.windows(
            features,
            prompt,
            gen,
            settings=settings,
            return_timestamps=return_timestamps,
            first_hidden=first_hidden,
            max_length_given=max_length_given,
            robust=robust,
            first_cache=first_cache,
        )

    def windows(
        self,
        features: np.ndarray,
        prompt: list[int],
        gen: GenerationConfig,
        *,
        settings: WhisperSettings,
        return_timestamps: bool,
        first_hidden: np.ndarray | None = None,
        max_length_given: bool = False,
        robust: RobustOptions | None = None,
        first_cache: dict[str, Any] | None = None,
    ) -> Iterator[Window]:
        """The seek loop, one :class:`Window` (its frames and generated segments) as each is decoded.

        robust: temperature fallback, no-speech skipping and prompts (:mod:`edgetf.whisper.fallback`).
        first_cache: the cross-attention cache of ``first_hidden`` (from language detection), reused by
        the first window's decoder."""
        gen = gen.copy()
        gen.do_sample = False  # as transformers: Whisper samples only at a temperature > 0 (robust)
        begin_suppress, suppress = gen.begin_suppress_tokens, gen.suppress_tokens
        gen.begin_suppress_tokens = gen.suppress_tokens = None  # applied below, in Whisper's order
        max_new = gen.max_new_tokens or 0
        if max_new + len(prompt) > self.max_target_positions:
            raise InvalidInputError(
                f"the prompt is {len(prompt)} tokens and max_new_tokens is {max_new}: together more than the "
                f"model's {self.max_target_positions} decoder positions; lower max_new_tokens"
            )
        if return_timestamps and settings.no_timestamps_id is None:
            raise InvalidInputError(
                "return_timestamps needs no_timestamps_token_id in the bundle's generation_config.json"
            )

        def make_processors(begin: int) -> list[Any]:
            processors: list[Any] = []
            if begin_suppress is not None:
                processors.append(SuppressTokensAtBegin(begin_suppress, begin))
            if suppress is not None:
                processors.append(SuppressTokens(suppress))
            if return_timestamps and settings.no_timestamps_id is not None:
                eos = gen.eos_ids[0] if gen.eos_ids else gen.bos_token_id
                processors.append(
                    TimestampRules(settings.no_timestamps_id, eos, begin, settings.max_initial_timestamp_index)
                )
            return processors

        processors = make_processors(len(prompt))
        timestamp_begin = (
            settings.no_timestamps_id + 1
            if settings.no_timestamps_id is not None
            else int(self.config["vocab_size"]) + 1
        )
        pad, eos_ids = gen.pad_id, gen.eos_ids
        total = features.shape[1]
        seek = 0
        start = np.asarray([prompt], dtype=np.int64)
        fallback = _FallbackState(robust) if robust is not None and not robust.plain else None
        while seek < total:
            frames = min(total - seek, self.window_frames)
            if seek == 0 and first_hidden is not None:
                hidden = first_hidden
            else:
                hidden = self.encode(self.window(features, seek, frames)[None])
            if fallback is not None:
                window = self.robust_window(
                    hidden, prompt, gen, make_processors, fallback, seek, frames, total, timestamp_begin,
                    max_length_given,
                )  # fmt: skip
                yield window
                seek = window.end
                continue
            reuse = first_cache if seek == 0 and hidden is first_hidden else None
            decoder = Seq2SeqDecoder(self.decoder, hidden, None, self.config, encoder_cache=reuse)
            out = generate(
                decoder,
                start,
                gen,
                max_length_given=max_length_given,
                max_positions=self.max_target_positions,
                logits_processors=processors,
            )
            seq = out.sequences[0, len(prompt) :]
            if seq.shape[0] and pad is not None and seq[-1] == pad:
                n_pad = int(np.sum(seq == pad)) - (1 if pad in eos_ids else 0)
                if n_pad:
                    seq = seq[:-n_pad]
            sequence = np.concatenate([start[0], seq])
            if seq.shape[0] and eos_ids and seq[-1] == eos_ids[0]:
                seq = seq[:-1]
            segments, advance = split_segments(seq, timestamp_begin, frames, self.input_stride)
            # an unfinished segment ending at <|0.00|> would not advance (transformers then loops forever)
            advance = advance if advance > 0 else frames
            yield Window(
                seek, seek + advance, total, segments, hidden=hidden, sequence=sequence, input_length=len(prompt)
            )
            seek += advance

    def no_speech_probability(self, hidden: np.ndarray, decoder_ids: list[int], init_length: int, token: int) -> float:
        """P(<|nospeech|>) from the unprocessed logits at <|startoftranscript|> (one teacher-forced pass)."""
        decoder = Seq2SeqDecoder(self.decoder, hidden, None, self.config)
        logits = decoder.teacher_forced_logits(np.asarray([decoder_ids], dtype=np.int64))
        position = no_speech_position(len(decoder_ids), init_length)
        return float(softmax(logits[0, position][None])[0, token])

    def robust_window(
        self,
        hidden: np.ndarray,
        prompt: list[int],
        gen: GenerationConfig,
        make_processors: Callable[[int], list[Any]],
        state: _FallbackState,
        seek: int,
        frames: int,
        total: int,
        timestamp_begin: int,
        max_length_given: bool,
    ) -> Window:
        """One window with :mod:`edgetf.whisper.fallback`'s decisions (transformers' ``generate_with_fallback``)."""
        options = state.options
        decoder_ids = decoder_prompt(
            prompt, state.history, state.condition, options, timestamp_begin, self.max_target_positions
        )
        max_new = gen.max_new_tokens or 0
        if max_new + len(decoder_ids) > self.max_target_positions:
            raise InvalidInputError(
                f"the decoder input (prompt, prompt_ids and previous text) is {len(decoder_ids)} tokens and "
                f"max_new_tokens is {max_new}: together more than the model's {self.max_target_positions} decoder "
                "positions; shorten the prompt or lower max_new_tokens"
            )
        processors = make_processors(len(decoder_ids))
        no_speech = probe = None
        if options.no_speech_threshold is not None:
            if timestamp_begin > int(self.config["vocab_size"]):
                raise InvalidInputError("no_speech_threshold needs no_timestamps_token_id in generation_config.json")
            if len(prompt) > 1:
                no_speech = self.no_speech_probability(hidden, decoder_ids, len(prompt), timestamp_begin - 2)
            else:  # read from the first step's scores, after the suppress rules (before the timestamp rules)
                probe = NoSpeechProbe(timestamp_begin - 2, len(decoder_ids), gen.num_beams > 1)
                rules = [i for i, p in enumerate(processors) if isinstance(p, TimestampRules)]
                processors.insert(rules[0] if rules else len(processors), probe)
        start = np.asarray([decoder_ids], dtype=np.int64)
        pad, eos_ids = gen.pad_id, gen.eos_ids
        attempts: list[Attempt] = []
        seq = np.zeros(0, np.int64)
        for i, temperature in enumerate(options.temperatures):
            config = gen.copy()
            config.do_sample = temperature is not None and temperature > 0.0
            config.temperature = temperature if config.do_sample else 1.0
            if config.do_sample:
                state.num_beams = 1  # transformers leaves beam search off for the rest of the call
            if state.num_beams is not None:
                config.num_beams = state.num_beams
            decoder = Seq2SeqDecoder(self.decoder, hidden, None, self.config)
            out = generate(
                decoder,
                start,
                config,
                max_length_given=max_length_given,
                max_positions=self.max_target_positions,
                logits_processors=processors,
                seed=options.rng,
                output_scores=options.wants_scores,
            )
            seq = _strip_padding(out.sequences[0, len(decoder_ids) :], pad, eos_ids)
            if probe is not None:
                no_speech = probe.prob
            attempt = judge(seq, _chosen_scores(out), temperature, no_speech, options, int(self.config["vocab_size"]))
            attempts.append(attempt)
            sequence = np.concatenate([start[0], seq])
            if seq.shape[0] and eos_ids and seq[-1] == eos_ids[0]:
                seq = seq[:-1]
            state.condition = keeps_conditioning(options, temperature)
            if not attempt.needs_fallback or i == len(options.temperatures) - 1:
                break
        if attempts[-1].skip:
            return Window(seek, seek + frames, total, [], tuple(attempts), tuple(decoder_ids))
        segments, advance = split_segments(seq, timestamp_begin, frames, self.input_stride)
        advance = advance if advance > 0 else frames
        state.history.extend(segments)
        return Window(
            seek,
            seek + advance,
            total,
            segments,
            tuple(attempts),
            tuple(decoder_ids),
            hidden=hidden,
            sequence=sequence,
            input_length=len(decoder_ids),
        )


class _FallbackState:
    """What the robust seek loop carries from window to window (transformers' ``current_segments``,
    ``do_condition_on_prev_tokens`` and the ``num_beams`` that sampling switches off)."""

    def __init__(self, options: RobustOptions):
        self.options = options
        self.history: list[np.ndarray] = options.first_history()
        self.condition = options.condition_on_prev_tokens
        self.num_beams: int | None = None


def _strip_padding(seq: np.ndarray, pad: int | None, eos_ids: list[int]) -> np.ndarray:
    """Finished-row padding removed, EOS kept (transformers before ``_need_fallback``)."""
    if seq.shape[0] and pad is not None and seq[-1] == pad:
        n_pad = int(np.sum(seq == pad)) - (1 if pad in eos_ids else 0)
        if n_pad:
            seq = seq[:-n_pad]
    return seq


def _chosen_scores(out: Any) -> list[np.ndarray]:
    """Per step, the processed scores of the returned sequence's row (beam search: along its beam)."""
    if out.beam_indices is None:
        return [step[0] for step in out.scores]
    rows = out.beam_indices[0]
    return [step[int(row)] for step, row in zip(out.scores, rows)]
