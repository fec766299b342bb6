"""automatic-speech-recognition: what Whisper and CTC share -- options, audio inputs, chunking.

The task maps to two pipelines, chosen from the bundle's config (never its name, see
:func:`edgetf.tasks.pipeline_class`): :mod:`.whisper_asr` for encoder-decoder bundles (Whisper) and
:mod:`.ctc_asr` for CTC models (Wav2Vec2 and kin). Both derive from the class here, which turns a call
into ``transcribe(audio, opts)`` per input.

Outputs are the reference's: ``{"text": ...}``, plus ``"chunks"`` with ``return_timestamps`` (segments
for Whisper with ``True``; characters or words for CTC with ``"char"``/``"word"``), plus any extra keys of a
dict input (one entry per chunk, as transformers). A list of inputs gives a list of outputs.

``vad_filter=True`` (with ``vad_parameters``, ``vad_model``; faster-whisper's names and semantics) transcribes
only the speech regions Silero VAD finds (:mod:`edgetf.audio.vad`), timestamps in the original audio's time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from ..audio.chunks import Chunk, chunk_sizes, iter_chunks
from ..audio.io import Audio, load_audio, tone
from ..audio.vad import SileroVAD, TimeMap, VadOptions, collect, detect_speech
from ..batching import check_batch_size
from ..errors import BundleError, InvalidInputError
from ..progress import check_progress_options, part_of
from ..whisper.fallback import ROBUST_OPTIONS
from .base import UNSET, Pipeline
from .live_asr import LiveEvent, LiveTranscriber

# Generation options accepted for Whisper (sampling follows ``temperature``, see edgetf.whisper.fallback).
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
    "do_sample",
    "top_k",
    "top_p",
)
WHISPER_OPTIONS = ("language", "task", *ROBUST_OPTIONS)
PIPELINE_OPTIONS = (
    "chunk_length_s",
    "stride_length_s",
    "return_timestamps",
    "return_language",
    "batch_size",
    "ignore_warning",
    "generate_kwargs",
    "decoder_kwargs",
    "progress",
    "cancel",
)
# Voice activity detection (edgetf.audio.vad; faster-whisper's option names): silence is cut before the model.
VAD_OPTIONS = ("vad_filter", "vad_parameters", "vad_model")


class AutomaticSpeechRecognitionPipeline(Pipeline):
    """``pipe(audio)`` -> ``{"text": ...}``; see the module docstring for inputs, options and outputs.

    Differences from transformers, all documented in edgetf.audio.io: files are decoded with libsndfile
    or, for other containers, ffmpeg's libraries through PyAV (no ffmpeg binary needed), dict inputs at
    another rate are resampled with soxr (transformers needs torchaudio), integer PCM is scaled, stereo
    arrays are averaged on the right axis.

    Both kinds of model accept every option name (so a Whisper-only option given to a CTC model gets an
    error that says so); subclasses set ``sampling_rate`` in ``setup`` and implement ``transcribe``.
    """

    is_whisper: ClassVar[bool] = False  # a sequence-to-sequence decoder: takes language and task (translate)
    options_accepted: ClassVar[dict[str, Any]] = dict.fromkeys(
        (*PIPELINE_OPTIONS, *VAD_OPTIONS, *WHISPER_OPTIONS, *WHISPER_GENERATION_OPTIONS), UNSET
    )
    sampling_rate: int

    def preprocessor_config(self) -> dict[str, Any]:
        """The bundle's preprocessor_config.json (the feature extractor's settings)."""
        pre = self.bundle.read_json_optional("preprocessor_config.json")
        if pre is None:
            raise BundleError(f"bundle {self.bundle.root} has no preprocessor_config.json (the feature extractor)")
        return pre

    # -- command line and demo -------------------------------------------------------------------------
    def demo_input(self) -> Any:
        return tone(2.0, self.sampling_rate)

    def cli_inputs(self, args: list[str]) -> Any:
        return args[0] if len(args) == 1 else list(args)

    # -- call ------------------------------------------------------------------------------------------------
    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        opts = self.call_options(kwargs)
        if isinstance(inputs, list):
            if not inputs:
                raise InvalidInputError("automatic-speech-recognition got an empty list of inputs")
            n = len(inputs)  # progress: the fraction of all inputs done
            return [
                self._one(item, {**opts, "progress": part_of(opts.get("progress"), i, n)})
                for i, item in enumerate(inputs)
            ]
        return self._one(inputs, opts)

    def call_options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Construction-time defaults <- call options, with ``generate_kwargs`` flattened in."""
        call = dict(self.check_options(kwargs))
        nested = call.pop("generate_kwargs", UNSET)
        if nested is not UNSET and nested is not None:
            if not isinstance(nested, Mapping):
                raise InvalidInputError(f"generate_kwargs must be a dict, got {type(nested).__name__}")
            self.check_options(nested)
            call.update(nested)
        opts = {k: v for k, v in self._defaults.items() if k != "generate_kwargs"}
        opts.update({k: v for k, v in call.items() if v is not UNSET})
        if opts.get("decoder_kwargs") is not None:
            raise InvalidInputError(
                "decoder_kwargs is for CTC models with a language-model decoder, which edgetf lacks"
            )
        check_progress_options(opts.get("progress"), opts.get("cancel"))
        self.check_model_options(opts)
        if opts.get("vad_filter"):
            opts["vad_parameters"] = VadOptions.from_mapping(opts.get("vad_parameters"))
        return opts

    def check_model_options(self, opts: Mapping[str, Any]) -> None:
        """Refuse options this kind of model cannot honour (subclasses)."""

    def _one(self, item: Any, opts: Mapping[str, Any]) -> dict[str, Any]:
        audio = self.load(item)
        if opts.get("vad_filter"):
            return self.transcribe_speech(audio, opts)
        return self.transcribe(audio, opts)

    def speech_regions(self, audio: Audio, opts: Mapping[str, Any]) -> list[tuple[int, int]]:
        """The (start, end) samples of speech that ``vad_filter`` keeps (Silero VAD, ``vad_parameters``)."""
        if audio.stride is not None:
            raise InvalidInputError("vad_filter cannot be combined with a 'stride' in the audio dict")
        path = opts.get("vad_model")
        if getattr(self, "_vad_path", UNSET) != path:
            self._vad, self._vad_path = SileroVAD(path), path
        return detect_speech(
            audio.samples, audio.sampling_rate, VadOptions.from_mapping(opts.get("vad_parameters")), self._vad
        )

    def transcribe_speech(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        """``vad_filter=True``: transcribe the speech regions joined together; every chunk timestamp is moved back
        to the original audio's time (:class:`edgetf.audio.vad.TimeMap`). No speech gives empty text."""
        regions = self.speech_regions(audio, opts)
        if not regions:
            result: dict[str, Any] = {"text": ""}
            if opts.get("return_timestamps"):
                result["chunks"] = []
            return with_extra(result, audio, 0)
        speech = Audio(collect(audio.samples, regions), audio.sampling_rate, None, audio.extra)
        result = self.transcribe(speech, opts)
        if "chunks" in result:
            result["chunks"] = TimeMap(regions, audio.sampling_rate).chunks(result["chunks"])
        return result

    def load(self, item: Any) -> Audio:
        """One input as float32 mono at the model's rate; a dict's extra keys must not clash with the output's."""
        audio = load_audio(item, self.sampling_rate, allow_stride=True)
        clash = sorted(set(audio.extra) & {"text", "chunks"})
        if clash:  # transformers would silently replace its transcription with them
            raise InvalidInputError(
                f"the audio dict's extra key(s) {clash} would overwrite the output's; extra keys are passed "
                "through to the output, so use other names (the input keys are array/raw, sampling_rate, stride)"
            )
        return audio

    def transcribe(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # -- streaming and live (edgetf.pipelines.asr_stream, edgetf.pipelines.live_asr) -------------------------
    def stream(self, inputs: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """One audio input's ``"chunks"`` (segments, words or characters), yielded as they are decoded."""
        if isinstance(inputs, list):
            raise InvalidInputError("stream() takes one audio input, not a list")
        opts = self.call_options(kwargs)
        return self.stream_chunks(self.load(inputs), opts)

    def stream_chunks(self, audio: Audio, opts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def live(self, blocks: Iterable[Any], *, sampling_rate: int | None = None, **kwargs: Any) -> Iterator[LiveEvent]:
        """Live transcription of an iterable of audio blocks: a :class:`LiveEvent` per update (confirmed and
        tentative words); ``min_chunk_s``, ``trim_s``, ``max_buffer_s`` tune it, other options go to each call."""
        tuning = {k: kwargs.pop(k) for k in ("min_chunk_s", "trim_s", "max_buffer_s") if k in kwargs}
        self.call_options(kwargs)
        return LiveTranscriber(self, sampling_rate, options=kwargs, **tuning).run(blocks)

    def chunks(self, audio: Audio, opts: Mapping[str, Any], align_to: int) -> list[Chunk] | None:
        """The overlapping chunks of ``chunk_length_s`` / ``stride_length_s``, or None without chunking."""
        length = opts.get("chunk_length_s")
        if not length:
            return None
        sizes = chunk_sizes(length, opts.get("stride_length_s"), self.sampling_rate, align_to)
        return list(iter_chunks(audio.samples, *sizes))


def batch_size(opts: Mapping[str, Any]) -> int:
    """The ``batch_size`` option (default 1), checked."""
    size = opts.get("batch_size", 1)
    return check_batch_size(1 if size is None else size)


def with_extra(result: dict[str, Any], audio: Audio, n_chunks: int) -> dict[str, Any]:
    """The output with a dict input's extra keys added, one entry per chunk (as transformers)."""
    for key, value in audio.extra.items():
        result[key] = [value] * n_chunks
    return result
