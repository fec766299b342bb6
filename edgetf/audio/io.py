"""Audio input for every audio task: a path, raw file bytes, an array, or the ``{"raw"/"array", "sampling_rate"}`` dict.

Everything becomes float32 mono at the model's sampling rate:

* files, bytes and binary file objects are decoded with libsndfile (soundfile): wav, flac, ogg/vorbis, opus,
  and mp3 with libsndfile >= 1.1; anything else (m4a/aac, webm, mp4/mkv/mov audio tracks) with ffmpeg's
  libraries through PyAV (:mod:`.media`, the ``[media]`` extra). transformers decodes them all with the
  ``ffmpeg`` binary (and fails without it). A file that holds less than its header promises (a WAV whose data
  chunk is cut, an mp3 short of its Xing frame count) is an error, never decoded partially.
* integer PCM is scaled to [-1, 1) (int16 / 32768, int32 / 2**31, uint8 (x - 128) / 128). transformers
  would pass integer arrays through unscaled.
* a file's (or bytes') channels are mixed as ``ffmpeg -ac 1`` mixes them, which is what transformers
  reads: stereo becomes (L + R) / sqrt(2); more channels go through ffmpeg's own matrix with the
  ``[media]`` extra (averaged without it). An array's channels are averaged. A 2-D array is read as
  (channels, samples), as transformers does, unless its
  first axis is the longer one, which can only be (samples, channels) (transformers would average the
  wrong axis there and keep a handful of samples).
* a different rate is resampled with soxr (libsoxr "HQ"). transformers resamples a dict input with
  torchaudio's windowed-sinc resampler and raises ImportError when torchaudio is absent; both are
  band-limited resamplers, so the audio agrees to within the filters' pass-band ripple, not bit for bit.

A bare array is taken to be at the model's rate already (as transformers does).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from . import media

ACCEPTED = (
    "a path to an audio or media file (wav, flac, ogg, mp3; m4a, webm, mp4, mkv, mov with the [media] extra), "
    "the file's bytes or a binary file object, a 1-D float array at the model's "
    "sampling rate, or a dict {'raw' or 'array': samples, 'sampling_rate': int}"
)
# Keys of the dict form that are consumed; any other key is passed through to the output, as transformers does.
_DICT_KEYS = ("raw", "array", "sampling_rate", "stride")


@dataclass
class Audio:
    """Decoded audio: float32 mono samples at ``sampling_rate``, plus what the dict form carried along."""

    samples: np.ndarray
    sampling_rate: int
    stride: tuple[int, int] | None = None  # (left, right) samples to ignore in decoding (CTC streaming)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sampling_rate


def check_sampling_rate(value: Any, what: str = "sampling_rate") -> int:
    """A positive integer rate (numpy integers and integral floats accepted), else InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{what} must be a positive integer (Hz), got {type(value).__name__}: {value!r:.60}")
    number = float(value)
    if not math.isfinite(number) or number <= 0 or number != int(number):
        raise InvalidInputError(f"{what} must be a positive integer (Hz), got {value!r}")
    return int(number)


def to_float32(samples: np.ndarray, what: str = "audio") -> np.ndarray:
    """Float samples as float32; integer PCM scaled to [-1, 1)."""
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind == "i":
        scale = float(2 ** (8 * samples.dtype.itemsize - 1))
        return (samples.astype(np.float64) / scale).astype(np.float32)
    if kind == "u":
        offset = float(2 ** (8 * samples.dtype.itemsize - 1))
        return ((samples.astype(np.float64) - offset) / offset).astype(np.float32)
    if kind == "b":
        raise InvalidInputError(f"{what} is a boolean array; pass float or integer PCM samples")
    raise InvalidInputError(f"{what} has dtype {samples.dtype}; pass float or integer PCM samples ({ACCEPTED})")


def to_mono(samples: np.ndarray, what: str = "audio", channel_axis: int | None = None) -> np.ndarray:
    """1-D samples; a 2-D array is averaged over its channel axis (see the module notes)."""
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2:
        if samples.size == 0:
            raise InvalidInputError(f"{what} has shape {samples.shape}: it holds no samples (zero-length audio)")
        if channel_axis is None:
            channel_axis = 0 if samples.shape[0] <= samples.shape[1] else 1
        return samples.mean(axis=channel_axis, dtype=np.float64).astype(np.float32)
    raise InvalidInputError(
        f"{what} has shape {samples.shape}; audio must be 1-D (samples) or 2-D (channels, samples), not "
        f"{samples.ndim}-D"
    )


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (HQ); identity when the rates match."""
    if rate_in == rate_out or samples.shape[0] == 0:
        return samples
    import soxr

    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def decode_file(source: str | os.PathLike[str] | bytes, what: str) -> tuple[np.ndarray, int]:
    """(float32 samples (frames, channels), rate) read with libsndfile; InvalidInputError if unreadable or if
    the file holds fewer frames than its header promises (a file cut short)."""
    import soundfile as sf

    try:
        return read_sndfile(source, what)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise InvalidInputError(
            f"cannot decode {what} as audio ({exc}); edgetf reads wav, flac, ogg/opus and mp3 through libsndfile "
            f"{getattr(sf, '__libsndfile_version__', '')}, and {media.MEDIA_FORMATS} with the media extra "
            f"({media.INSTALL_HINT})"
        ) from exc


def decode_any(source: str | os.PathLike[str] | bytes, what: str, sampling_rate: int) -> tuple[np.ndarray, int]:
    """(samples (frames, channels), rate): libsndfile for what it reads (wav, flac, ogg, mp3), else ffmpeg's
    decoders through PyAV (:mod:`edgetf.audio.media`, the ``[media]`` extra), which give mono at
    ``sampling_rate`` already. A file libsndfile recognises but finds cut short is an error, never handed on."""
    import soundfile as sf

    try:
        data, rate = read_sndfile(source, what)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        if not media.available():
            raise media.missing_extra_error(what, str(exc)) from exc
        return media.decode_media(source, sampling_rate, what)[:, None], sampling_rate
    if data.ndim == 2 and data.shape[1] == 2:
        return ffmpeg_stereo_downmix(data)[:, None], rate
    if data.ndim == 2 and data.shape[1] > 2 and media.available():
        return media.decode_media(source, sampling_rate, what)[:, None], sampling_rate
    return data, rate


def ffmpeg_stereo_downmix(frames: np.ndarray) -> np.ndarray:
    """(frames, 2) -> mono as ffmpeg's ``-ac 1`` gives it (and so transformers' ``ffmpeg_read``): each
    channel weighted 1/sqrt(2), not averaged."""
    return (frames.sum(axis=1, dtype=np.float64) * math.sqrt(0.5)).astype(np.float32)


def read_sndfile(source: str | os.PathLike[str] | bytes, what: str) -> tuple[np.ndarray, int]:
    """libsndfile's (frames, channels) float32 samples and rate; its own errors propagate (the caller decides
    whether another decoder gets a turn); InvalidInputError for a file cut short."""
    import soundfile as sf

    check_wav_complete(source, what)
    handle: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with sf.SoundFile(handle) as sound:
        promised, rate = sound.frames, int(sound.samplerate)
        if sound.seekable():  # as sf.read does: libsndfile's ogg/opus reader starts right only after a seek
            sound.seek(0)
        data = sound.read(dtype="float32", always_2d=True)
    if 0 < data.shape[0] < promised:
        raise InvalidInputError(
            f"{what} is cut short: its header promises {promised} frames ({promised / rate:.2f} s) but only "
            f"{data.shape[0]} ({data.shape[0] / rate:.2f} s) could be decoded; re-download or re-export the file"
        )
    return data, rate


def check_wav_complete(source: str | os.PathLike[str] | bytes, what: str) -> None:
    """InvalidInputError when a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile silently reads what is there; a stream written with an unknown size (0 or 0xFFFFFFFF, as pipes
    write it) is accepted."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        head, total = bytes(source[:WAV_HEAD_BYTES]), len(source)
    else:
        with open(source, "rb") as handle:
            head = handle.read(WAV_HEAD_BYTES)
        total = os.path.getsize(source)
    shortfall = wav_shortfall(head, total)
    if shortfall is not None:
        promised, present, block = shortfall
        raise InvalidInputError(
            f"{what} is a cut-short WAV file: its header promises {promised // block} frames ({promised} bytes of "
            f"audio) but the file holds {present // block} ({present} bytes); re-download or re-export it"
        )


WAV_HEAD_BYTES = 1 << 16


def wav_shortfall(head: bytes, total: int) -> tuple[int, int, int] | None:
    """(promised data bytes, present data bytes, bytes per frame) of a RIFF/WAVE file missing at least one
    frame of its data chunk; None for complete files, unknown sizes, or anything that is not a WAV."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, block = 12, 1
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 22 <= len(head):
            block = max(1, int.from_bytes(head[offset + 20 : offset + 22], "little"))
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):
                return None
            present = max(0, total - (offset + 8))
            return (size, present, block) if size - present >= block else None
        offset += 8 + size + (size & 1)
    return None


def load_audio(inputs: Any, sampling_rate: int, *, allow_stride: bool = False) -> Audio:
    """Decode one audio input to float32 mono at ``sampling_rate`` (see the module docstring)."""
    stride = None
    extra: dict[str, Any] = {}
    rate_in = sampling_rate
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        if path.startswith(("http://", "https://")):
            raise InvalidInputError(f"{path!r} is a URL; edgetf runs offline: download the file and pass its path")
        if not os.path.isfile(path):
            raise InvalidInputError(f"audio file {path!r} does not exist or is not a file; accepted: {ACCEPTED}")
        data, rate_in = decode_any(path, f"the file {path!r}", sampling_rate)
        samples = to_mono(data, "audio file", channel_axis=1)
        what = f"audio file {path!r}"
    elif isinstance(inputs, (bytes, bytearray, memoryview)) or is_binary_file(inputs):
        if not isinstance(inputs, (bytes, bytearray, memoryview)):
            inputs = read_binary_file(inputs)
        if len(inputs) == 0:
            raise InvalidInputError("audio bytes are empty; pass the content of an audio file")
        data, rate_in = decode_any(bytes(inputs), "the given bytes", sampling_rate)
        samples = to_mono(data, "audio bytes", channel_axis=1)
        what = "audio bytes"
    elif isinstance(inputs, Mapping):
        samples, rate_in, stride, extra = _from_dict(inputs, allow_stride)
        what = "audio dict"
    elif isinstance(inputs, np.ndarray):
        samples = to_mono(to_float32(inputs, "audio array"), "audio array")
        what = "audio array"
    else:
        raise InvalidInputError(f"unsupported audio input of type {type(inputs).__name__}; accepted: {ACCEPTED}")

    if samples.shape[0] == 0:
        raise InvalidInputError(f"{what} holds no samples (zero-length audio)")
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise InvalidInputError(f"{what} contains {bad} NaN or infinite sample(s); clean the audio first")
    if rate_in != sampling_rate:
        ratio = sampling_rate / rate_in
        too_short = f"{what} at {rate_in} Hz is shorter than one sample at the model's {sampling_rate} Hz"
        if samples.shape[0] * ratio < 1:  # checked first: soxr never returns for ratios beyond ~1e10 (1e300 Hz)
            raise InvalidInputError(too_short)
        samples = resample(samples, rate_in, sampling_rate)
        if samples.shape[0] == 0:
            raise InvalidInputError(too_short)
        if stride is not None:
            stride = (int(round(stride[0] * ratio)), int(round(stride[1] * ratio)))
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), sampling_rate, stride, extra)


def is_binary_file(value: Any) -> bool:
    """A file object opened for reading (``open(path, "rb")``, ``io.BytesIO``, an upload's stream)."""
    return callable(getattr(value, "read", None)) and not isinstance(value, (str, bytes, Mapping, np.ndarray))


def read_binary_file(handle: Any) -> bytes:
    """The remaining content of a binary file object; InvalidInputError for a text-mode one."""
    data = "" if isinstance(handle, io.TextIOBase) else handle.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(
            f"the audio file object is in text mode ({type(handle).__name__}); open the file in binary mode ('rb')"
        )
    return bytes(data)


def _from_dict(
    inputs: Mapping[str, Any], allow_stride: bool
) -> tuple[np.ndarray, int, tuple[int, int] | None, dict[str, Any]]:
    if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
        raise InvalidInputError(
            "an audio dict needs a 'raw' (or 'array') key with the samples and a 'sampling_rate' key; "
            f"got keys {sorted(map(str, inputs))}"
        )
    raw = inputs["raw"] if "raw" in inputs else inputs["array"]
    extra = {k: v for k, v in inputs.items() if k not in _DICT_KEYS}
    if "raw" not in inputs:
        extra.pop("path", None)  # datasets' Audio dicts carry the file path; transformers drops it
    if not isinstance(raw, np.ndarray):
        raise InvalidInputError(
            f"the audio dict's samples must be a numpy array, got {type(raw).__name__}; accepted: {ACCEPTED}"
        )
    rate = check_sampling_rate(inputs["sampling_rate"], "the audio dict's sampling_rate")
    samples = to_mono(to_float32(raw, "audio dict samples"), "audio dict samples")
    stride = None
    if inputs.get("stride") is not None:
        if not allow_stride:
            raise InvalidInputError("'stride' in an audio dict is only accepted by automatic-speech-recognition")
        stride = _check_stride(inputs["stride"], samples.shape[0])
    return samples, rate, stride, extra


def _check_stride(value: Any, n: int) -> tuple[int, int]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if ok:
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok:
        raise InvalidInputError(f"'stride' must be a (left, right) pair of non-negative sample counts, got {value!r}")
    left, right = int(value[0]), int(value[1])
    if left + right > n:
        raise InvalidInputError(f"stride {value!r} is larger than the audio ({n} samples)")
    return left, right


def tone(seconds: float = 2.0, sampling_rate: int = 16000, frequency: float = 440.0) -> np.ndarray:
    """A float32 sine tone at amplitude 0.5 (the pipelines' demo input)."""
    t = np.arange(int(round(seconds * sampling_rate)), dtype=np.float64) / sampling_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
