"""automatic-speech-recognition for CTC models (Wav2Vec2 and kin): ``onnx/model`` -> greedy CTC decoding.

preprocess: the audio (or each ``chunk_length_s`` chunk) as the normalised waveform
(:class:`edgetf.audio.features.Wav2Vec2Features`); session: (frames, vocab) logits, chunks of equal length
batched together; postprocess: argmax ids, strides cut, then text and optional ``"char"``/``"word"``
timestamps from :class:`edgetf.text.ctc.CTCVocab`.

CTC chunks of a batch are never padded together, so ``batch_size`` does not change results (transformers
pads the last, shorter chunk, which shifts its group-norm statistics).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..audio.chunks import Chunk, rescale_stride
from ..audio.features import Wav2Vec2Features, check_min_samples, check_one_pass_fits, conv_min_samples
from ..audio.io import Audio, load_audio
from ..errors import BundleError, InvalidInputError
from ..progress import Progress
from ..text.ctc import CTCVocab
from .asr_stream import ctc_pieces
from .speech_recognition import (
    WHISPER_GENERATION_OPTIONS,
    WHISPER_OPTIONS,
    AutomaticSpeechRecognitionPipeline,
    batch_size,
    with_extra,
)

LONG_AUDIO_HINT = "pass chunk_length_s=30 to transcribe it in overlapping chunks, as transformers recommends"


def inputs_to_logits_ratio(config: Mapping[str, Any]) -> int:
    """Samples per output frame of a CTC model: the product of its feature-encoder conv strides."""
    strides = config.get("conv_stride")
    if not isinstance(strides, list) or not strides:
        raise BundleError("config.json has no conv_stride: cannot tell how many samples make one CTC frame")
    return int(math.prod(int(s) for s in strides))


class CTCSpeechRecognitionPipeline(AutomaticSpeechRecognitionPipeline):
    """``pipe(audio)`` -> ``{"text": ...}`` for a CTC model; see the module docstrings."""

    main_component = "model"

    def setup(self) -> None:
        self.ctc_features = Wav2Vec2Features.from_config(self.preprocessor_config())
        self.sampling_rate = self.ctc_features.sampling_rate
        self.vocab = CTCVocab.from_bundle(self.bundle)
        self.ratio = inputs_to_logits_ratio(self.bundle.config)
        self.min_samples = conv_min_samples(self.bundle.config)

    def timestamps_option(self) -> bool | str:
        """The ``return_timestamps`` value that gives timestamped text chunks: "word"
        (`python -m edgetf run ... --timestamps`)."""
        return "word"

    def check_model_options(self, opts: Mapping[str, Any]) -> None:
        given = [k for k in (*WHISPER_OPTIONS, *WHISPER_GENERATION_OPTIONS, "return_language") if k in opts]
        if given:
            raise InvalidInputError(f"{given} only apply to Whisper (sequence-to-sequence) models; this is a CTC model")

    # -- preprocess ------------------------------------------------------------------------------------------
    def features(self, samples: np.ndarray) -> np.ndarray:
        """The normalised waveform of 1-D float audio at the model's rate, as the reference extractor gives it."""
        return self.ctc_features(samples)

    def ctc_chunks(self, audio: Audio, opts: Mapping[str, Any]) -> tuple[list[Chunk], bool]:
        """The chunks to run and whether their strides are cut. The audio (or each chunk) must be long
        enough for the convolutional feature encoder to give a frame; a last chunk shorter than that,
        which would give no frame, is dropped (transformers fails there)."""
        chunks = self.chunks(audio, opts, self.ratio)
        if chunks is None:
            check_min_samples(audio.samples, self.min_samples, self.sampling_rate)
            check_one_pass_fits(audio.samples, self.bundle.config, self.sampling_rate, LONG_AUDIO_HINT)
            n = audio.samples.shape[0]
            stride = None if audio.stride is None else (n, *audio.stride)
            return [Chunk(audio.samples, stride or (n, 0, 0), True)], audio.stride is not None
        check_min_samples(chunks[0].samples, self.min_samples, self.sampling_rate, "the first audio chunk")
        return [c for c in chunks if c.samples.shape[0] >= self.min_samples], True

    # -- session ------------------------------------------------------------------------------------------------
    def ctc_logits(self, chunks: list[Chunk], batch: int) -> list[np.ndarray]:
        """(frames, vocab) CTC logits per chunk; chunks of equal length share a batch (no padding)."""
        return list(self.iter_ctc_logits(chunks, batch))

    def iter_ctc_logits(self, chunks: list[Chunk], batch: int) -> Iterator[np.ndarray]:
        """:meth:`ctc_logits` one chunk at a time (a batch is run when its first chunk is asked for)."""
        session = self.session()
        start = 0
        while start < len(chunks):
            n = chunks[start].samples.shape[0]
            stop = start
            while stop < len(chunks) and stop - start < batch and chunks[stop].samples.shape[0] == n:
                stop += 1
            values = np.stack([self.ctc_features(c.samples) for c in chunks[start:stop]])
            feeds = {"input_values": values, "attention_mask": np.ones(values.shape, dtype=np.int64)}
            yield from session.run(feeds, ["logits"])["logits"]
            start = stop

    def logits(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """The (frames, vocab) logits of each chunk, before strides are cut (what the greedy ids of
        :meth:`token_ids` are the argmax of)."""
        opts = self.call_options(kwargs)
        audio = load_audio(inputs, self.sampling_rate, allow_stride=True)
        return self.ctc_logits(self.ctc_chunks(audio, opts)[0], batch_size(opts))

    def token_ids(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """The greedy (argmax) id of every output frame, per chunk, before strides are cut."""
        opts = self.call_options(kwargs)
        audio = load_audio(inputs, self.sampling_rate, allow_stride=True)
        return self.ctc_ids(self.ctc_chunks(audio, opts)[0], batch_size(opts))

    def ctc_ids(self, chunks: list[Chunk], batch: int) -> list[np.ndarray]:
        """Greedy CTC ids per chunk."""
        return [np.argmax(logits, axis=-1).astype(np.int64) for logits in self.ctc_logits(chunks, batch)]

    # -- postprocess ------------------------------------------------------------------------------------------
    def transcribe(self, audio: Audio, opts: Mapping[str, Any]) -> dict[str, Any]:
        timestamps = self.ctc_timestamps(opts)
        progress = Progress.from_options(opts)
        progress.check()
        step: tuple[np.ndarray, float, int] = (np.zeros(0, np.int64), 1.0, 0)
        for step in self.id_steps(audio, opts):
            progress.update(step[1])
        return with_extra(self.ctc_result(step[0], timestamps), audio, step[2])

    def ctc_timestamps(self, opts: Mapping[str, Any]) -> Any:
        """The ``return_timestamps`` option, checked: None/False, "char" or "word"."""
        timestamps = opts.get("return_timestamps")
        if timestamps not in (None, False, "char", "word"):
            raise InvalidInputError(f"return_timestamps={timestamps!r}: CTC models give 'char' or 'word' timestamps")
        return timestamps

    def id_steps(self, audio: Audio, opts: Mapping[str, Any]) -> Iterator[tuple[np.ndarray, float, int]]:
        """(greedy ids so far with strides cut, fraction of the audio done, chunks in all), chunk by chunk."""
        chunks, strided = self.ctc_chunks(audio, opts)
        spans = np.cumsum([c.stride[0] - c.stride[1] - c.stride[2] for c in chunks]) if strided else None
        pieces = []
        for i, (chunk, logits) in enumerate(zip(chunks, self.iter_ctc_logits(chunks, batch_size(opts)))):
            ids = np.argmax(logits, axis=-1).astype(np.int64)
            if strided:
                frames, left, right = rescale_stride(chunk.stride, 1 / self.ratio)
                ids = ids[left : frames - right]
            pieces.append(ids)
            done = 1.0 if spans is None or i == len(chunks) - 1 else float(spans[i] / spans[-1])
            yield np.concatenate(pieces), done, len(chunks)
        if not chunks:
            yield np.zeros(0, np.int64), 1.0, 0

    def ctc_result(self, ids: np.ndarray, timestamps: Any) -> dict[str, Any]:
        """``{"text"}`` of greedy ids, plus ``"chunks"`` of characters or words with ``timestamps``."""
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
        return result

    def stream_chunks(self, audio: Audio, opts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Words (or characters) as their chunks are decoded; see :func:`edgetf.pipelines.asr_stream.ctc_pieces`."""
        return ctc_pieces(self, audio, opts)
