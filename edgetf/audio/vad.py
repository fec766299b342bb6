"""Voice activity detection with the Silero VAD ONNX model, and the time map back to the original audio.

Options and region logic follow faster-whisper's ``VadOptions`` / ``get_speech_timestamps`` (itself adapted from
silero-vad's): per 512-sample window (32 ms at 16 kHz) the model gives a speech probability; a region opens at
``threshold``, closes after ``min_silence_duration_ms`` below ``neg_threshold`` (default ``threshold - 0.15``),
is dropped when shorter than ``min_speech_duration_ms``, is split before ``max_speech_duration_s`` (at the last
silence over 98 ms if any), and is padded by ``speech_pad_ms`` each side (half the gap when neighbours are closer).

The model file (``data/silero_vad.onnx``, MIT, from the ``silero-vad`` package: see ``data/SOURCE.md``) ships with
edgetf, so this works offline; ``vad_model=path`` picks another file with the same interface.
The region logic (:func:`speech_regions`) and the time map (:class:`TimeMap`) are pure functions of numbers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError

MODEL_PATH = Path(__file__).parent / "data" / "silero_vad.onnx"
VAD_RATE = 16000
WINDOW = 512  # samples per probability at 16 kHz
CONTEXT = 64  # samples of the previous window the model sees
MIN_SILENCE_AT_MAX_SPEECH_MS = 98


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's VadOptions (same names, defaults and meaning); see the module docstring."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> VadOptions:
        """Checked options from a ``vad_parameters`` dict (or a VadOptions); unknown keys and out-of-range
        values raise InvalidInputError naming what is accepted."""
        if params is None:
            return cls()
        if isinstance(params, VadOptions):
            return params
        if not isinstance(params, Mapping):
            raise InvalidInputError(f"vad_parameters must be a dict, got {type(params).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, params)) - set(names))
        if unknown:
            raise InvalidInputError(f"unknown vad_parameters {unknown}; accepted: {names}")
        values = dict(params)
        for name, value in values.items():
            if value is None and name == "neg_threshold":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InvalidInputError(f"vad_parameters[{name!r}] must be a number, got {value!r:.40}")
            if math.isnan(float(value)):
                raise InvalidInputError(f"vad_parameters[{name!r}] is NaN")
        opts = cls(**values)
        for name in ("threshold", "neg_threshold"):
            value = getattr(opts, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"vad_parameters[{name!r}]={value!r}: a probability in [0, 1] is accepted")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            value = getattr(opts, name)
            if not 0 <= value < math.inf:
                raise InvalidInputError(f"vad_parameters[{name!r}]={value!r}: a finite duration >= 0 is accepted")
        if not opts.max_speech_duration_s > 0:
            raise InvalidInputError(
                f"vad_parameters['max_speech_duration_s']={opts.max_speech_duration_s!r}: a duration > 0 is accepted"
            )
        return opts


class SileroVAD:
    """Speech probabilities per 32-ms window from the Silero VAD ONNX model (one session, reused)."""

    def __init__(self, path: str | Path | None = None):
        from ..session import Session, SessionOptions

        self.path = Path(path) if path is not None else MODEL_PATH
        if not self.path.is_file():
            raise InvalidInputError(f"vad_model {str(self.path)!r} is not a file; pass a Silero VAD .onnx file")
        self.session = Session(self.path, "cpu", SessionOptions(intra_op_threads=1))
        missing = {"input", "state", "sr"} - set(self.session.inputs)
        if missing:
            raise InvalidInputError(
                f"vad_model {str(self.path)!r} lacks the Silero VAD inputs {sorted(missing)} (input, state, sr)"
            )

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """One speech probability per 512-sample window of 16-kHz float audio (the last window zero-padded)."""
        n = samples.shape[0]
        padded = np.zeros(-(-n // WINDOW) * WINDOW + CONTEXT, np.float32)
        padded[CONTEXT : CONTEXT + n] = samples
        state = np.zeros((2, 1, 128), np.float32)
        rate = np.array(VAD_RATE, dtype=np.int64)
        probs = np.empty(max(0, (padded.shape[0] - CONTEXT) // WINDOW), np.float32)
        for i in range(probs.shape[0]):
            window = padded[i * WINDOW : (i + 1) * WINDOW + CONTEXT][None]
            out = self.session.run({"input": window, "state": state, "sr": rate}, ["output", "stateN"])
            probs[i], state = out["output"][0, 0], out["stateN"]
        return probs


def speech_regions(probs: np.ndarray, n_samples: int, options: VadOptions) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech at 16 kHz from window probabilities (faster-whisper's rules)."""
    sr = VAD_RATE
    min_speech = sr * options.min_speech_duration_ms / 1000
    pad = sr * options.speech_pad_ms / 1000
    max_speech = sr * options.max_speech_duration_s - WINDOW - 2 * pad
    min_silence = sr * options.min_silence_duration_ms / 1000
    min_silence_at_max = sr * MIN_SILENCE_AT_MAX_SPEECH_MS / 1000
    neg = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)

    triggered, regions, start = False, [], 0
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs):
        pos = WINDOW * i
        if prob >= options.threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = pos
        if prob >= options.threshold and not triggered:
            triggered, start = True, pos
            continue
        if triggered and pos - start > max_speech:
            if prev_end:
                regions.append([start, prev_end])
                if next_start < prev_end:  # silence since, not speech yet
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
            else:
                regions.append([start, pos])
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < neg and triggered:
            if not temp_end:
                temp_end = pos
            if pos - temp_end > min_silence_at_max:
                prev_end = temp_end
            if pos - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                regions.append([start, temp_end])
            prev_end = next_start = temp_end = 0
            triggered = False
    if triggered and n_samples - start > min_speech:
        regions.append([start, n_samples])

    for i, region in enumerate(regions):  # padding: half the gap when neighbours are closer than two pads
        if i == 0:
            region[0] = int(max(0, region[0] - pad))
        if i != len(regions) - 1:
            gap = regions[i + 1][0] - region[1]
            if gap < 2 * pad:
                region[1] += int(gap // 2)
                regions[i + 1][0] = int(max(0, regions[i + 1][0] - gap // 2))
            else:
                region[1] = int(min(n_samples, region[1] + pad))
                regions[i + 1][0] = int(max(0, regions[i + 1][0] - pad))
        else:
            region[1] = int(min(n_samples, region[1] + pad))
    return [(int(a), int(b)) for a, b in regions]


def detect_speech(
    samples: np.ndarray, sampling_rate: int, options: VadOptions, vad: SileroVAD
) -> list[tuple[int, int]]:
    """Speech regions as sample ranges of ``samples`` (at ``sampling_rate``; other rates than 16 kHz are
    resampled for the model and the ranges scaled back)."""
    audio = samples
    if sampling_rate != VAD_RATE:
        from .io import resample

        audio = resample(samples, sampling_rate, VAD_RATE)
    regions = speech_regions(vad.probabilities(audio), audio.shape[0], options)
    if sampling_rate == VAD_RATE:
        return regions
    scale = sampling_rate / VAD_RATE
    n = samples.shape[0]
    return [(min(n, int(round(a * scale))), min(n, int(round(b * scale)))) for a, b in regions]


class TimeMap:
    """Maps times in the concatenated speech regions back to the original audio (pure arithmetic).

    A time inside region k moves by the silence removed before region k; an end time that falls exactly on a
    region boundary stays in the region it ends (as faster-whisper's SpeechTimestampsMap)."""

    def __init__(self, regions: list[tuple[int, int]], sampling_rate: int):
        self.sampling_rate = sampling_rate
        self.regions = list(regions)
        self.ends: list[int] = []  # region ends in concatenated samples
        self.offsets: list[int] = []  # silence removed before each region, in samples
        removed = previous = 0
        for start, end in self.regions:
            removed += start - previous
            previous = end
            self.ends.append(end - removed)
            self.offsets.append(removed)

    def original(self, seconds: float | None, is_end: bool = False) -> float | None:
        """The original-audio time of a time in the concatenated speech (None stays None)."""
        if seconds is None or not self.regions:
            return seconds
        sample = int(round(seconds * self.sampling_rate))
        index = bisect.bisect_left(self.ends, sample) if is_end else bisect.bisect_right(self.ends, sample)
        index = min(index, len(self.ends) - 1)
        return (sample + self.offsets[index]) / self.sampling_rate

    def chunks(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Output chunks with every ``timestamp`` (start, end) moved to original-audio time."""
        moved = []
        for chunk in chunks:
            start, end = chunk["timestamp"]
            start_t = self.original(start)
            end_t = self.original(end, is_end=True)
            if start_t is not None and end_t is not None and end_t < start_t:
                end_t = start_t
            moved.append({**chunk, "timestamp": (start_t, end_t)})
        return moved


def collect(samples: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
    """The speech regions of ``samples`` joined end to end."""
    if not regions:
        return np.zeros(0, np.float32)
    return np.ascontiguousarray(np.concatenate([samples[a:b] for a, b in regions]), dtype=np.float32)
