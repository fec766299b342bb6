"""Model input features in numpy, built from ``preprocessor_config.json``.

* :class:`WhisperFeatures`: the log-Mel spectrogram of ``WhisperFeatureExtractor`` (80 or 128 bins;
  periodic Hann window, centred reflect-padded STFT, power spectrum, Slaney mel filters from 0 to
  8 kHz, log10 clamped to 8 below the maximum, then ``(x + 4) / 4``), with padding/truncation to
  ``chunk_length`` seconds.
* :func:`normalize_wav2vec2`: the zero-mean unit-variance normalisation of ``Wav2Vec2FeatureExtractor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BundleError, InvalidInputError


# -- mel filter bank (Slaney scale and area normalisation, as librosa / transformers.audio_utils) --------
def hz_to_mel_slaney(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = 3.0 * freq / 200.0
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(freq >= 1000.0, log_part, linear)


def mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    linear = 200.0 * mels / 3.0
    log_part = 1000.0 * np.exp(np.log(6.4) * (mels - 15.0) / 27.0)
    return np.where(mels >= 15.0, log_part, linear)


def mel_filters(n_freqs: int, n_mels: int, sampling_rate: int, f_min: float = 0.0, f_max: float = 8000.0) -> np.ndarray:
    """Triangular mel filters, shape (n_freqs, n_mels), Slaney-normalised to constant energy per band."""
    mel_points = np.linspace(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2)
    hz_points = mel_to_hz_slaney(mel_points)
    fft_freqs = np.linspace(0, sampling_rate // 2, n_freqs)
    widths = np.diff(hz_points)
    offsets = hz_points[None, :] - fft_freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels]))[None, :]
    return filters


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


@dataclass
class WhisperFeatures:
    """``WhisperFeatureExtractor`` in numpy. Build with :meth:`from_config`."""

    feature_size: int = 80
    sampling_rate: int = 16000
    hop_length: int = 160
    chunk_length: int = 30
    n_fft: int = 400
    padding_value: float = 0.0
    _filters: np.ndarray = field(init=False, repr=False)
    _window: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._filters = mel_filters(1 + self.n_fft // 2, self.feature_size, self.sampling_rate)
        self._window = hann_window(self.n_fft)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WhisperFeatures:
        kind = config.get("feature_extractor_type", "WhisperFeatureExtractor")
        if kind != "WhisperFeatureExtractor":
            raise BundleError(f"preprocessor_config.json names {kind!r}; a WhisperFeatureExtractor config is needed")
        if float(config.get("dither", 0.0) or 0.0) != 0.0:
            raise BundleError(
                "preprocessor_config.json sets dither != 0 (random noise); edgetf computes features "
                "deterministically, set dither to 0.0"
            )
        return cls(
            feature_size=int(config.get("feature_size", 80)),
            sampling_rate=int(config.get("sampling_rate", 16000)),
            hop_length=int(config.get("hop_length", 160)),
            chunk_length=int(config.get("chunk_length", 30)),
            n_fft=int(config.get("n_fft", 400)),
            padding_value=float(config.get("padding_value", 0.0)),
        )

    @property
    def n_samples(self) -> int:
        """Samples in one window of ``chunk_length`` seconds (480,000 for Whisper)."""
        return self.chunk_length * self.sampling_rate

    @property
    def nb_max_frames(self) -> int:
        return self.n_samples // self.hop_length

    def __call__(self, samples: np.ndarray, *, pad_to_window: bool = True) -> np.ndarray:
        """Log-Mel features (feature_size, frames), float32.

        pad_to_window=True pads or truncates the audio to ``chunk_length`` seconds first (3000 frames);
        False keeps the whole audio (transformers' ``truncation=False, padding="longest"``).
        """
        samples = np.asarray(samples, dtype=np.float32)
        if pad_to_window:
            n = self.n_samples
            if samples.shape[0] >= n:
                samples = samples[:n]
            else:
                samples = np.concatenate([samples, np.full(n - samples.shape[0], self.padding_value, np.float32)])
        return self.log_mel(samples)

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """Log-Mel spectrogram of a 1-D signal, one frame per hop (the last STFT frame dropped)."""
        pad = self.n_fft // 2
        signal = np.asarray(samples, dtype=np.float64)
        if signal.shape[0] <= pad:
            signal = np.concatenate([signal, np.zeros(pad + 1 - signal.shape[0])])
        padded = np.pad(signal, pad, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop_length]
        frames = frames[:-1]  # transformers drops the last frame
        spectrum = np.fft.rfft(frames * self._window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = power @ self._filters  # (frames, mels)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).T.astype(np.float32)


def normalize_wav2vec2(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance (float32), as ``Wav2Vec2FeatureExtractor`` with ``do_normalize=True``."""
    x = np.asarray(samples, dtype=np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


@dataclass(frozen=True)
class Wav2Vec2Features:
    """``Wav2Vec2FeatureExtractor`` settings: rate, normalisation, padding value."""

    sampling_rate: int = 16000
    do_normalize: bool = True
    padding_value: float = 0.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Wav2Vec2Features:
        kind = config.get("feature_extractor_type", "Wav2Vec2FeatureExtractor")
        if kind != "Wav2Vec2FeatureExtractor":
            raise BundleError(
                f"preprocessor_config.json names {kind!r}; this model reads the waveform and needs a "
                "Wav2Vec2FeatureExtractor config (wav2vec2, hubert, wavlm ... checkpoints)"
            )
        return cls(
            sampling_rate=int(config.get("sampling_rate", 16000)),
            do_normalize=bool(config.get("do_normalize", True)),
            padding_value=float(config.get("padding_value", 0.0)),
        )

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32)
        return normalize_wav2vec2(x) if self.do_normalize else x


def conv_min_samples(config: dict[str, Any]) -> int:
    """Fewest samples a Wav2Vec2-style convolutional feature encoder accepts (one output frame):
    400 for wav2vec2-base's kernels (10, 3, 3, 3, 3, 2, 2) and strides (5, 2, 2, 2, 2, 2, 2);
    1 when ``config.json`` does not give the kernels and strides."""
    kernels, strides = config.get("conv_kernel"), config.get("conv_stride")
    if not isinstance(kernels, list) or not isinstance(strides, list) or len(kernels) != len(strides):
        return 1
    need = 1
    for kernel, stride in zip(reversed(kernels), reversed(strides)):
        need = (need - 1) * int(stride) + int(kernel)
    return need


def check_min_samples(samples: np.ndarray, minimum: int, sampling_rate: int, what: str = "audio") -> None:
    """InvalidInputError when ``samples`` is too short for the feature encoder to give one frame."""
    if samples.shape[0] < minimum:
        raise InvalidInputError(
            f"{what} is {samples.shape[0]} samples ({samples.shape[0] / sampling_rate * 1000:.1f} ms) long; "
            f"this model needs at least {minimum} samples ({minimum / sampling_rate * 1000:.1f} ms at "
            f"{sampling_rate} Hz)"
        )


# One pass of a Wav2Vec2-style encoder holds a (heads, frames, frames) float32 attention matrix.
MAX_ATTENTION_BYTES = 4 * 1024**3


def check_one_pass_fits(samples: np.ndarray, config: Any, sampling_rate: int, hint: str) -> None:
    """InvalidInputError when audio run in one pass would need more than MAX_ATTENTION_BYTES of attention
    scores (wav2vec2-base: about 3 minutes at 16 kHz), which would exhaust memory rather than answer."""
    strides = config.get("conv_stride") or [1]
    frames = samples.shape[0] // max(1, int(np.prod([int(s) for s in strides])))
    heads = int(config.get("num_attention_heads") or 1)
    need = heads * frames * frames * 4
    if need > MAX_ATTENTION_BYTES:
        raise InvalidInputError(
            f"audio is {samples.shape[0] / sampling_rate:.0f} s long: one pass over it would need "
            f"{need / 1024**3:.0f} GiB for attention (the limit is {MAX_ATTENTION_BYTES // 1024**3} GiB); {hint}"
        )
