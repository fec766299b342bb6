"""automatic-speech-recognition: transformers' AutomaticSpeechRecognitionPipeline for Whisper and CTC models.

The bundle decides the path, from its config fields (never its name):

* encoder-decoder with a ``WhisperFeatureExtractor`` (``onnx/encoder_model`` + ``onnx/decoder_model_merged``):
  log-Mel features, then Whisper decoding (:mod:`edgetf.audio.whisper`) through :mod:`edgetf.generation`;
* otherwise a CTC model (``onnx/model``, Wav2Vec2 and kin): normalised waveform, greedy CTC decoding.

Outputs are the reference's: ``{"text": ...}``, plus ``"chunks"`` with ``return_timestamps`` (segments
for Whisper with ``True``; characters or words for CTC with ``"char"``/``"word"``), plus any extra keys of a
dict input (one entry per chunk, as transformers). A list of inputs gives a list of outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..audio.chunks import Chunk, chunk_sizes, iter_chunks, rescale_stride
from ..audio.features import (
    Wav2Vec2Features,
    WhisperFeatures,
    check_min_samples,
    check_one_pass_fits,
    conv_min_samples,
)
from ..audio.io import Audio, load_audio, tone
from ..audio.whisper import WhisperModel, WhisperSettings, prompt_tokens
from ..errors import BundleError, InvalidInputError
from ..generation import GenerationConfig, call_generation_config, pipeline_generation_config
from ..text.ctc import CTCVocab
from ..text.tokenizer import TextTokenizer
from ..text.whisper import ChunkOutput, WhisperText
from .base import Pipeline, batched
from .text_generation import model_generation_config

_UNSET: Any = object()
# Deterministic generation options accepted for Whisper (sampling and temperature fallback are not supported).
WHISPER_GENERATION_OPTIONS = (
    "max_new_tokens",
    "max_length",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
)
WHISPER_OPTIONS = ("language", "task")
PIPELINE_OPTIONS = (
    "chunk_length_s",
    "stride_length_s",
    "return_timestamps",
    "return_language",
    "batch_size",
    "ignore_warning",
    "generate_kwargs",
    "decoder_kwargs",
)
# transformers' ASR pipeline defaults, used unless generation_config.json sets them (follows openai's whisper).
PIPELINE_GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 256, "num_beams": 5}


LONG_AUDIO_HINT = "pass chunk_length_s=30 to transcribe it in overlapping chunks, as transformers recommends"


def inputs_to_logits_ratio(config: Mapping[str, Any]) -> int:
    """Samples per output frame of a CTC model: the product of its feature-encoder conv strides."""
    strides = config.get("conv_stride")
    if not isinstance(strides, list) or not strides:
        raise BundleError("config.json has no conv_stride: cannot tell how many samples make one CTC frame")
    return int(math.prod(int(s) for s in strides))


class AutomaticSpeechRecognitionPipeline(Pipeline):
    """``pipe(audio)`` -> ``{"text": ...}``; see the module docstring for inputs, options and outputs.

    Differences from transformers, all documented in edgetf.audio.io: files are decoded with libsndfile
    (no ffmpeg needed), dict inputs at another rate are resampled with soxr (transformers needs
    torchaudio), integer PCM is scaled, stereo arrays are averaged on the right axis. CTC chunks of a
    batch are never padded together, so ``batch_size`` does not change CTC results (transformers pads
    the last, shorter chunk, which shifts its group-norm statistics). Whisper word timestamps,
    sampling/temperature fallback and ``condition_on_prev_tokens`` are not supported and raise
    InvalidInputError.
    """

    options_accepted: ClassVar[dict[str, Any]] = dict.fromkeys(
        (*PIPELINE_OPTIONS, *WHISPER_OPTIONS, *WHISPER_GENERATION_OPTIONS), _UNSET
    )

    @property  # type: ignore[override]
    def main_component(self) -> str:
        return "encoder_model" if self.bundle.config.get("is_encoder_decoder") else "model"

    def setup(self) -> None:
        config = self.bundle.config
        pre = self.bundle.read_json_optional("preprocessor_config.json")
        if pre is None:
            raise BundleError(f"bundle {self.bundle.root} has no preprocessor_config.json (the feature extractor)")
        self.is_whisper = bool(config.get("is_encoder_decoder"))
        if self.is_whisper:
            self.whisper_features = WhisperFeatures.from_config(pre)
            self.sampling_rate = self.whisper_features.sampling_rate
            self.tokenizer = TextTokenizer.from_bundle(self.bundle)
            self.text = WhisperText(self.tokenizer)
            self.model_generation = model_generation_config(self.bundle)
            self.settings = WhisperSettings.from_extra(self.model_generation.extra)
            self._raw_return_timestamps = self.model_generation.extra.get("return_timestamps")
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
            self.time_precision = self.whisper_features.chunk_length / int(config.get("max_source_positions", 1500))
        else:
            self.ctc_features = Wav2Vec2Features.from_config(pre)
            self.sampling_rate = self.ctc_features.sampling_rate
            self.vocab = CTCVocab.from_bundle(self.bundle)
            self.ratio = inputs_to_logits_ratio(config)
            self.min_samples = conv_min_samples(config)

    # -- command line and demo -------------------------------------------------------------------------
    def demo_input(self) -> Any:
        return tone(2.0, self.sampling_rate)

    def cli_inputs(self, args: list[str]) -> Any:
        return args[0] if len(args) == 1 else list(args)

    def timestamps_option(self) -> bool | str:
        """The ``return_timestamps`` value that gives timestamped text chunks for this model:
        True (segments) for Whisper, "word" for CTC (`python -m edgetf run ... --timestamps`)."""
        return True if self.is_whisper else "word"

    # -- features -----------------------------------------------------------------------------------------
    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model input features of 1-D float audio at the model's rate (log-Mel for Whisper, else the
        normalised waveform), as the reference feature extractor computes them."""
        if self.is_whisper:
            return self.whisper_features(samples)
        return self.ctc_features(samples)

    # -- call ------------------------------------------------------------------------------------------------
    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self._split(kwargs)
        if isinstance(inputs, list):
            if not inputs:
                raise InvalidInputError("automatic-speech-recognition got an empty list of inputs")
            return [self._one(item, opts) for item in inputs]
        return self._one(inputs, opts)

    def _split(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        call = dict(self.check_options(kwargs))
        nested = call.pop("generate_kwargs", _UNSET)
        if nested is not _UNSET and nested is not None:
            if not isinstance(nested, Mapping):
                raise InvalidInputError(f"generate_kwargs must be a dict, got {type(nested).__name__}")
            self.check_options(nested)
            call.update(nested)
        opts = {k: v for k, v in self._defaults.items() if k != "generate_kwargs"}
        opts.update({k: v for k, v in call.items() if v is not _UNSET})
        if opts.get("decoder_kwargs") is not None:
            raise InvalidInputError(
                "decoder_kwargs is for CTC models with a language-model decoder, which edgetf lacks"
            )
        if not self.is_whisper:
            given = [k for k in (*WHISPER_OPTIONS, *WHISPER_GENERATION_OPTIONS, "return_language") if k in opts]
            if given:
                raise InvalidInputError(
                    f"{given} only apply to Whisper (sequence-to-sequence) models; this is a CTC model"
                )
        return opts

    def _one(self, item: Any, opts: Mapping[str, Any]) -> dict[str, Any]:
        audio = load_audio(item, self.sampling_rate, allow_stride=True)
        clash = sorted(set(audio.extra) & {"text", "chunks"})
        if clash:  # transformers would silently replace its transcription with them
            raise InvalidInputError(
                f"the audio dict's extra key(s) {clash} would overwrite the output's; extra keys are passed "
                "through to the output, so use other names (the input keys are array/raw, sampling_rate, stride)"
            )
        if self.is_whisper:
            return self._whisper(audio, opts)
        return self._ctc(audio, opts)

    def _chunks(self, audio: Audio, opts: Mapping[str, Any], align_to: int) -> list[Chunk] | None:
        length = opts.get("chunk_length_s")
        if not length:
            return None
        sizes = chunk_sizes(length, opts.get("stride_length_s"), self.sampling_rate, align_to)
        return list(iter_chunks(audio.samples, *sizes))

    # -- CTC ---------------------------------------------------------------------------------------------------
    def _ctc(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        timestamps = opts.get("return_timestamps")
        if timestamps not in (None, False, "char", "word"):
            raise InvalidInputError(f"return_timestamps={timestamps!r}: CTC models give 'char' or 'word' timestamps")
        chunks, strided = self._ctc_chunks(audio, opts)
        pieces = []
        for chunk, ids in zip(chunks, self._ctc_ids(chunks, _batch_size(opts))):
            if strided:
                frames, left, right = rescale_stride(chunk.stride, 1 / self.ratio)
                ids = ids[left : frames - right]
            pieces.append(ids)
        ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        result: dict[str, Any] = {"text": self.vocab.decode(ids)}
        if timestamps:
            offsets: list[Any] = self.vocab.char_offsets(ids)
            if timestamps == "word":
                offsets = self.vocab.word_offsets(offsets)
            ratio, sr = self.ratio, self.sampling_rate
            result["chunks"] = [
                {
                    "text": o.char if timestamps == "char" else o.word,
                    "timestamp": (o.start_offset * ratio / sr, o.end_offset * ratio / sr),
                }
                for o in offsets
            ]
        for key, value in audio.extra.items():
            result[key] = [value] * len(chunks)
        return result

    def _ctc_chunks(self, audio: Audio, opts: Mapping[str, Any]) -> tuple[list[Chunk], bool]:
        """The chunks to run and whether their strides are cut. The audio (or each chunk) must be long
        enough for the convolutional feature encoder to give a frame; a last chunk shorter than that,
        which would give no frame, is dropped (transformers fails there)."""
        chunks = self._chunks(audio, opts, self.ratio)
        if chunks is None:
            check_min_samples(audio.samples, self.min_samples, self.sampling_rate)
            check_one_pass_fits(audio.samples, self.bundle.config, self.sampling_rate, LONG_AUDIO_HINT)
            n = audio.samples.shape[0]
            stride = None if audio.stride is None else (n, *audio.stride)
            return [Chunk(audio.samples, stride or (n, 0, 0), True)], audio.stride is not None
        check_min_samples(chunks[0].samples, self.min_samples, self.sampling_rate, "the first audio chunk")
        return [c for c in chunks if c.samples.shape[0] >= self.min_samples], True

    def _ctc_ids(self, chunks: list[Chunk], batch_size: int) -> list[np.ndarray]:
        """Greedy CTC ids per chunk."""
        return [np.argmax(logits, axis=-1).astype(np.int64) for logits in self._ctc_logits(chunks, batch_size)]

    def _ctc_logits(self, chunks: list[Chunk], batch_size: int) -> list[np.ndarray]:
        """(frames, vocab) CTC logits per chunk; chunks of equal length share a batch (no padding)."""
        session = self.session()
        out: list[np.ndarray] = []
        start = 0
        while start < len(chunks):
            n = chunks[start].samples.shape[0]
            stop = start
            while stop < len(chunks) and stop - start < batch_size and chunks[stop].samples.shape[0] == n:
                stop += 1
            values = np.stack([self.ctc_features(c.samples) for c in chunks[start:stop]])
            feeds = {"input_values": values, "attention_mask": np.ones(values.shape, dtype=np.int64)}
            out.extend(session.run(feeds, ["logits"])["logits"])
            start = stop
        return out

    def logits(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """CTC models: the (frames, vocab) logits of each chunk, before strides are cut (what the greedy
        ids of :meth:`token_ids` are the argmax of). Whisper decodes step by step and has no such array."""
        if self.is_whisper:
            raise InvalidInputError("logits() is for CTC models; for Whisper use token_ids()")
        opts = self._split(kwargs)
        audio = load_audio(inputs, self.sampling_rate, allow_stride=True)
        return self._ctc_logits(self._ctc_chunks(audio, opts)[0], _batch_size(opts))

    # -- Whisper -------------------------------------------------------------------------------------------------
    def _whisper_model(self) -> WhisperModel:
        return WhisperModel(self.session("encoder_model"), self.session("decoder_model_merged"), self.bundle.config)

    def _whisper(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        outputs, timestamps = self._whisper_outputs(audio, opts)
        return_language = bool(opts.get("return_language") or False)
        text, optional = self.text.decode_asr(
            outputs, return_timestamps=timestamps, return_language=return_language, time_precision=self.time_precision
        )
        result: dict[str, Any] = {"text": text, **optional}
        for key, value in audio.extra.items():
            result[key] = [value] * len(outputs)
        return result

    def token_ids(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """Whisper: the generated ids of each chunk (prompt and EOS removed), before text assembly.
        CTC: the greedy (argmax) id of every output frame, per chunk, before strides are cut."""
        opts = self._split(kwargs)
        audio = load_audio(inputs, self.sampling_rate, allow_stride=True)
        if self.is_whisper:
            return [np.asarray(o.tokens, dtype=np.int64) for o in self._whisper_outputs(audio, opts)[0]]
        return self._ctc_ids(self._ctc_chunks(audio, opts)[0], _batch_size(opts))

    def _whisper_outputs(self, audio: Audio, opts: Mapping[str, Any]) -> tuple[list[ChunkOutput], bool]:
        requested = opts.get("return_timestamps")
        if requested == "word":
            raise InvalidInputError(
                "return_timestamps='word' (cross-attention alignment) is not supported for Whisper; "
                "use return_timestamps=True for segment timestamps"
            )
        if requested not in (None, False, True):
            raise InvalidInputError(
                f"return_timestamps={requested!r}: Whisper gives segment timestamps with True (not 'char')"
            )
        timestamps = bool(requested) or self.settings.return_timestamps
        gen_opts = {k: v for k, v in opts.items() if k in WHISPER_GENERATION_OPTIONS}
        gen = call_generation_config(self.generation_config, self.model_generation, gen_opts)
        if gen.do_sample:
            raise InvalidInputError("sampling is not supported for Whisper in edgetf; use do_sample=False")
        language = opts.get("language", self.settings.language)
        task = opts.get("task", self.settings.task)
        model = self._whisper_model()
        fe = self.whisper_features
        decode_kwargs = {"max_length_given": "max_length" in gen_opts}
        chunks = self._chunks(audio, opts, 1)
        outputs: list[ChunkOutput] = []
        sr = self.sampling_rate
        if chunks is not None:
            for group in batched(chunks, _batch_size(opts)):
                feats = np.stack([fe(c.samples) for c in group])
                hidden = model.encode(feats)
                for i, chunk in enumerate(group):
                    ids = self._transcribe(
                        model, feats[i], hidden[i : i + 1], gen, language, task, timestamps, decode_kwargs
                    )
                    length, left, right = chunk.stride
                    outputs.append(ChunkOutput(ids.tolist(), (length / sr, left / sr, right / sr)))
            return outputs, timestamps
        samples = audio.samples
        long_form = samples.shape[0] > fe.n_samples
        feats = fe(samples, pad_to_window=not long_form)
        ts_for_generate = timestamps
        if feats.shape[1] > model.window_frames:
            if self._raw_return_timestamps is False and not requested:
                raise InvalidInputError(
                    f"the audio is {audio.seconds:.1f} s, more than Whisper's {fe.chunk_length} s window: "
                    "pass return_timestamps=True (long-form transcription) or chunk_length_s=30"
                )
            ts_for_generate = True
        hidden = model.encode(feats[None, :, : model.window_frames])
        ids = self._transcribe(model, feats, hidden, gen, language, task, ts_for_generate, decode_kwargs)
        stride = None
        if audio.stride is not None:
            stride = (samples.shape[0] / sr, audio.stride[0] / sr, audio.stride[1] / sr)
        outputs.append(ChunkOutput(ids.tolist(), stride))
        return outputs, timestamps

    def _transcribe(
        self,
        model: WhisperModel,
        feats: np.ndarray,
        hidden: np.ndarray,
        gen: GenerationConfig,
        language: str | None,
        task: str | None,
        timestamps: bool,
        decode_kwargs: Mapping[str, Any],
    ) -> np.ndarray:
        start = gen.decoder_start_token_id
        if start is None:
            raise BundleError("generation_config.json has no decoder_start_token_id (<|startoftranscript|>)")
        lang_ids = sorted((self.settings.lang_to_id or {}).values())

        def detect() -> int:
            return int(model.detect_language(hidden, int(start), lang_ids)[0])

        prompt = prompt_tokens(
            self.settings, int(start), language=language, task=task, return_timestamps=timestamps, detect=detect
        )
        return model.transcribe(
            feats,
            prompt,
            gen,
            settings=self.settings,
            return_timestamps=timestamps,
            first_hidden=hidden,
            **decode_kwargs,
        )


def _batch_size(opts: Mapping[str, Any]) -> int:
    size = opts.get("batch_size", 1)
    size = 1 if size is None else size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidInputError(f"batch_size must be an integer >= 1, got {size!r}")
    return size
