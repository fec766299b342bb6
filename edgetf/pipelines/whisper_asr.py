"""automatic-speech-recognition for Whisper (encoder-decoder bundles: ``onnx/encoder_model`` +
``onnx/decoder_model_merged``), as transformers' pipeline over ``WhisperForConditionalGeneration``.

preprocess: log-Mel features of the audio, or of each ``chunk_length_s`` chunk
(:class:`edgetf.audio.features.WhisperFeatures`); session: the prompt and the 30-second seek loop over
:mod:`edgetf.generation` (:mod:`edgetf.whisper.seek`, :mod:`edgetf.whisper.tokens`); postprocess: text
and segment timestamps (:func:`edgetf.whisper.segments.decode_asr`).

Robust long-form options (``temperature`` fallback, ``compression_ratio_threshold``, ``logprob_threshold``,
``no_speech_threshold``, ``condition_on_prev_tokens``, ``prompt_ids`` / ``prompt``) follow transformers'
``generate`` (:mod:`edgetf.whisper.fallback`). ``return_timestamps="word"`` aligns each decoded window's
tokens to the audio afterwards (:mod:`edgetf.whisper.alignment`) and returns word chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.features import WhisperFeatures
from ..audio.io import Audio, load_audio
from ..batching import batched
from ..errors import InvalidInputError
from ..families import family_for
from ..generation import GenerationConfig, Seq2SeqDecoder, call_generation_config, pipeline_generation_config
from ..progress import Progress
from ..text.tokenizer import TextTokenizer
from ..whisper.alignment import AlignmentSettings, check_attention_outputs, window_token_times
from ..whisper.fallback import CONFIG_DEFAULTS, RobustOptions
from ..whisper.seek import WhisperModel
from ..whisper.segments import ChunkOutput, decode_asr
from ..whisper.tokens import WhisperSettings, WhisperTokens
from .asr_stream import whisper_segments
from .generative import model_generation_config
from .speech_recognition import WHISPER_GENERATION_OPTIONS, AutomaticSpeechRecognitionPipeline, batch_size, with_extra

# transformers' ASR pipeline defaults, used unless generation_config.json sets them (follows openai's whisper).
PIPELINE_GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 256, "num_beams": 5}


@dataclass(frozen=True)
class GenerateStep:
    """One step of :meth:`WhisperSpeechRecognitionPipeline.generate_steps`."""

    outputs: list[ChunkOutput]
    timestamps: bool | str  # True (segments) or "word"
    done: float


class WhisperSpeechRecognitionPipeline(AutomaticSpeechRecognitionPipeline):
    """``pipe(audio)`` -> ``{"text": ...}`` for Whisper; see the module docstrings."""

    is_whisper = True
    main_component = "encoder_model"

    def setup(self) -> None:
        self.whisper_features = WhisperFeatures.from_config(self.preprocessor_config())
        self.sampling_rate = self.whisper_features.sampling_rate
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.tokens = WhisperTokens(self.tokenizer)
        self.model_generation = model_generation_config(self.bundle)
        self.settings = WhisperSettings.from_extra(self.model_generation.extra)
        self.timestamps_configured = self.model_generation.extra.get("return_timestamps")
        # transformers' pipelines merge the model's generation config into theirs whatever version wrote it
        construct = {k: v for k, v in self._defaults.items() if k in WHISPER_GENERATION_OPTIONS}
        self.generation_config = pipeline_generation_config(
            self.model_generation,
            PIPELINE_GENERATION_DEFAULTS,
            construct,
            None,
            self.tokenizer.token_id("pad_token"),
            always_merge=True,
        )
        positions = int(self.bundle.config.get("max_source_positions", 1500))
        self.time_precision = self.whisper_features.chunk_length / positions

    def timestamps_option(self) -> bool | str:
        """The ``return_timestamps`` value that gives timestamped text chunks: True (segments)
        (`python -m edgetf run ... --timestamps`)."""
        return True

    # -- preprocess ------------------------------------------------------------------------------------------
    def features(self, samples: np.ndarray) -> np.ndarray:
        """Log-Mel features of 1-D float audio at the model's rate, as the reference extractor gives them."""
        return self.whisper_features(samples)

    def wants_timestamps(self, opts: Mapping[str, Any]) -> bool:
        requested = opts.get("return_timestamps")
        if requested not in (None, False, True, "word"):
            raise InvalidInputError(
                f"return_timestamps={requested!r}: Whisper gives segment timestamps with True and word "
                "timestamps with 'word' (not 'char')"
            )
        return bool(requested) or self.settings.return_timestamps

    # -- session ------------------------------------------------------------------------------------------------
    def model(self) -> WhisperModel:
        return WhisperModel(self.session("encoder_model"), self.session("decoder_model_merged"), self.bundle.config)

    def token_ids(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """The generated ids of each chunk (prompt and EOS removed), before text assembly."""
        opts = self.call_options(kwargs)
        audio = load_audio(inputs, self.sampling_rate, allow_stride=True)
        return [np.asarray(o.tokens, dtype=np.int64) for o in self.generate(audio, opts)[0]]

    def logits(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """Whisper decodes step by step and has no single logits array (CTC models do)."""
        raise InvalidInputError("logits() is for CTC models; for Whisper use token_ids()")

    def word_alignment(self, model: WhisperModel) -> AlignmentSettings:
        """The alignment heads and smoothing, after checking the bundle can give word timestamps."""
        if not family_for(self.bundle.config).word_alignment:
            raise InvalidInputError(
                "return_timestamps='word' is not available for this model family; use return_timestamps=True"
            )
        settings = AlignmentSettings.from_configs(self.model_generation.extra, self.bundle.config)
        check_attention_outputs(model.decoder.output_names, settings, model.decoder.path.name)
        return settings

    def word_windows(
        self,
        model: WhisperModel,
        feats: np.ndarray,
        hidden: np.ndarray,
        n_samples: int,
        gen: GenerationConfig,
        stride: tuple[float, float, float] | None,
        **run_options: Any,
    ) -> Iterator[tuple[ChunkOutput, float]]:
        """Decode with timestamps, then give each kept token its time from its window's alignment
        (``return_timestamps="word"``; transformers' ``token_timestamps`` plus the window's offset): the
        output so far and the fraction of the spectrogram done, window by window."""
        settings = self.word_alignment(model)
        hop = self.whisper_features.hop_length
        long_form = feats.shape[1] > model.window_frames
        frames = n_samples // hop if long_form else -(-n_samples // hop)  # transformers' attention mask length
        ids: list[int] = []
        times: list[float] = []
        for window in model.run_windows(feats, hidden, gen, return_timestamps=True, **run_options):
            kept = sum(len(piece) for piece in window.segments)
            ids.extend(int(t) for piece in window.segments for t in piece)
            if kept:
                decoder = Seq2SeqDecoder(model.decoder, window.hidden, None, model.config)
                token_times = window_token_times(
                    decoder, window.sequence, window.input_length, settings, frames - window.start
                )
                offset = np.float32(window.start * self.time_precision / model.input_stride)
                times.extend((token_times[:kept].astype(np.float32) + offset).tolist())
            yield ChunkOutput(list(ids), stride, list(times)), min(1.0, window.end / window.total)

    def generate(self, audio: Audio, opts: Mapping[str, Any]) -> tuple[list[ChunkOutput], bool | str]:
        """The generated ids of each chunk (or of the whole audio) and whether timestamps were asked for;
        reports ``progress`` and honours ``cancel`` between windows and chunks."""
        progress = Progress.from_options(opts)
        progress.check()
        step = None
        for step in self.generate_steps(audio, opts):
            progress.update(step.done)
        if step is None:  # pragma: no cover - generate_steps always yields
            raise InvalidInputError("the audio gave nothing to decode")
        return step.outputs, step.timestamps

    def generate_steps(self, audio: Audio, opts: Mapping[str, Any]) -> Iterator[GenerateStep]:
        """:meth:`generate` one decoded chunk or 30-second window at a time: the outputs so far (a long-form
        output grows window by window) and the fraction of the audio done."""
        timestamps: bool | str = self.wants_timestamps(opts)
        words = opts.get("return_timestamps") == "word"
        if words:
            timestamps = "word"
        gen_opts = {k: v for k, v in opts.items() if k in WHISPER_GENERATION_OPTIONS}
        gen = call_generation_config(self.generation_config, self.model_generation, gen_opts)
        run_options = {
            "robust": self.robust_options(opts, gen),
            "settings": self.settings,
            "language": opts.get("language", self.settings.language),
            "task": opts.get("task", self.settings.task),
            "max_length_given": "max_length" in gen_opts,
        }
        model, fe, sr = self.model(), self.whisper_features, self.sampling_rate
        chunks = self.chunks(audio, opts, 1)
        outputs: list[ChunkOutput] = []
        if chunks is not None:
            spans = np.cumsum([c.stride[0] - c.stride[1] - c.stride[2] for c in chunks])
            for group in batched(chunks, batch_size(opts)):
                feats = np.stack([fe(c.samples) for c in group])
                hidden = model.encode(feats)
                for i, chunk in enumerate(group):
                    length, left, right = chunk.stride
                    seconds = (length / sr, left / sr, right / sr)
                    if words:
                        n = len(chunk.samples)
                        *_, (output, _) = self.word_windows(
                            model, feats[i], hidden[i : i + 1], n, gen, seconds, **run_options
                        )
                        outputs.append(output)
                    else:
                        ids = model.run(
                            feats[i], hidden[i : i + 1], gen, return_timestamps=bool(timestamps), **run_options
                        )
                        outputs.append(ChunkOutput(ids.tolist(), seconds))
                    yield GenerateStep(list(outputs), timestamps, float(spans[len(outputs) - 1] / spans[-1]))
            if not chunks:
                yield GenerateStep([], timestamps, 1.0)
            return
        samples = audio.samples
        long_form = samples.shape[0] > fe.n_samples
        feats = fe(samples, pad_to_window=not long_form)
        ts_for_generate = timestamps
        if feats.shape[1] > model.window_frames:
            if self.timestamps_configured is False and not opts.get("return_timestamps"):
                raise InvalidInputError(
                    f"the audio is {audio.seconds:.1f} s, more than Whisper's {fe.chunk_length} s window: "
                    "pass return_timestamps=True (long-form transcription) or chunk_length_s=30"
                )
            ts_for_generate = True
        hidden = model.encode(feats[None, :, : model.window_frames])
        stride = None
        if audio.stride is not None:
            stride = (samples.shape[0] / sr, audio.stride[0] / sr, audio.stride[1] / sr)
        if words:
            output = ChunkOutput([], stride, [])
            for output, done in self.word_windows(model, feats, hidden, samples.shape[0], gen, stride, **run_options):
                if done < 1.0:
                    yield GenerateStep([output], timestamps, done)
            yield GenerateStep([output], timestamps, 1.0)
            return
        ids: list[int] = []
        for window in model.run_windows(feats, hidden, gen, return_timestamps=ts_for_generate, **run_options):
            ids.extend(int(t) for piece in window.segments for t in piece)
            done = min(1.0, window.end / window.total)
            if done < 1.0:
                yield GenerateStep([ChunkOutput(list(ids), stride)], timestamps, done)
        yield GenerateStep([ChunkOutput(ids, stride)], timestamps, 1.0)

    def robust_options(self, opts: Mapping[str, Any], gen: Any) -> RobustOptions:
        """The call's fallback / no-speech / prompt options, generation_config.json supplying the thresholds."""
        extra = self.model_generation.extra
        prev_sot = extra.get("prev_sot_token_id")
        if prev_sot is None and gen.suppress_tokens is not None and len(gen.suppress_tokens) >= 2:
            prev_sot = gen.suppress_tokens[-2]  # transformers' fallback for old generation configs
        defaults = {k: extra.get(k) for k in CONFIG_DEFAULTS}
        return RobustOptions.from_options(opts, defaults, prev_sot=prev_sot, prompt_text_ids=self.get_prompt_ids)

    def get_prompt_ids(self, text: str) -> list[int]:
        """``<|startofprev|>`` + the text's ids, as transformers' ``processor.get_prompt_ids(text)``."""
        sot_prev = self.tokens.sot_prev
        if sot_prev is None:
            raise InvalidInputError("this Whisper vocabulary has no <|startofprev|> token, so it takes no text prompt")
        ids = self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
        first_special = self.tokens.eot if self.tokens.eot is not None else min(self.tokens.special_ids)
        special = next((i for i in ids if i >= first_special), None)
        if special is not None:
            raise InvalidInputError(
                f"the prompt text contains the special token {self.tokenizer.id_to_token(special)}, which a prompt "
                "may not hold"
            )
        return [sot_prev, *ids]

    # -- postprocess ------------------------------------------------------------------------------------------
    def transcribe(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        outputs, timestamps = self.generate(audio, opts)
        text, optional = decode_asr(
            self.tokens,
            outputs,
            return_timestamps=timestamps,
            return_language=bool(opts.get("return_language") or False),
            time_precision=self.time_precision,
        )
        return with_extra({"text": text, **optional}, audio, len(outputs))

    def stream_chunks(self, audio: Audio, opts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Segments (the output's ``"chunks"``) as their windows or chunks are decoded; see
        :func:`edgetf.pipelines.asr_stream.whisper_segments`."""
        return whisper_segments(self, audio, opts)
