"""Audio input and features: decoding, resampling, Whisper log-Mel, Wav2Vec2 normalisation (pure numpy)."""

from .features import WhisperFeatures, normalize_wav2vec2
from .io import Audio, load_audio

__all__ = ["Audio", "WhisperFeatures", "load_audio", "normalize_wav2vec2"]
