"""Media containers libsndfile cannot read (m4a/aac, mp4/mkv/mov/webm audio tracks, ...), decoded with PyAV.

PyAV's wheels carry ffmpeg's own libraries, so a file decodes to the samples the ``ffmpeg`` binary gives
transformers' ``ffmpeg_read`` (``ffmpeg -i pipe:0 -ac 1 -ar RATE -f f32le``): the first audio track is decoded
and passed through ffmpeg's resampler (libswresample, via PyAV's ``AudioResampler``) to float32 mono at the
model's rate, which is the same down-mix and the same resampling filter as that command line.

PyAV is the optional ``[media]`` extra (``pip install edgetf[media]``), imported only when a file needs it.
Errors are InvalidInputError naming the input: no audio track, no samples, not a media file, or a file cut
short (its container promises more audio than it holds).
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..errors import InvalidInputError

MEDIA_FORMATS = "mp3, m4a/aac, ogg/opus/vorbis, webm, mp4/mkv/mov audio tracks (anything ffmpeg decodes)"
INSTALL_HINT = "pip install edgetf[media]"
# A decoded track may fall short of its container's stated duration by encoder priming/padding (tens of ms);
# more than this is a file cut short.
SHORTFALL_TOLERANCE_S = 0.25
SHORTFALL_TOLERANCE_FRACTION = 0.02


def available() -> bool:
    """Whether PyAV (the ``[media]`` extra) is installed."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def missing_extra_error(what: str, reason: str) -> InvalidInputError:
    """The error for a file libsndfile cannot read when PyAV is absent: it names the extra and the formats."""
    return InvalidInputError(
        f"cannot decode {what} as audio with libsndfile ({reason}); wav, flac, ogg/vorbis/opus and mp3 are read "
        f"without extras; for {MEDIA_FORMATS}, install the media extra: {INSTALL_HINT}"
    )


def decode_media(source: str | os.PathLike[str] | bytes, sampling_rate: int, what: str) -> np.ndarray:
    """The first audio track of a media file (path or bytes) as float32 mono at ``sampling_rate``."""
    import av

    handle: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    try:
        container = av.open(handle, mode="r")
    except av.error.EOFError as exc:
        raise InvalidInputError(f"{what}: the container ends before any audio (an empty or cut-short file)") from exc
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidInputError(
            f"cannot decode {what}: neither libsndfile nor ffmpeg (PyAV) recognise it as audio ({exc}); "
            f"accepted: wav, flac, {MEDIA_FORMATS}"
        ) from exc
    with container:
        streams = container.streams.audio
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise InvalidInputError(
                f"{what}: no audio track (the file holds {', '.join(kinds)}); pass a file with an audio stream"
            )
        stream = streams[0]
        promised = _promised_seconds(stream, container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        pieces: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise InvalidInputError(
                f"{what} is corrupt or cut short: decoding its audio track ({stream.codec_context.name}) failed "
                f"after {sum(p.shape[0] for p in pieces) / sampling_rate:.2f} s ({exc})"
            ) from exc
    samples = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    if samples.shape[0] == 0:
        raise InvalidInputError(f"{what}: the audio track holds no samples (zero-length audio)")
    check_complete(samples.shape[0] / sampling_rate, promised, what)
    if promised is not None:  # the encoder's trailing padding past the stated duration, which ffmpeg drops too
        samples = samples[: max(1, int(round(promised * sampling_rate)))]
    return samples


def check_complete(decoded_s: float, promised_s: float | None, what: str) -> None:
    """InvalidInputError when ``decoded_s`` falls short of what the container promised (a file cut short)."""
    if promised_s is None:
        return
    tolerance = max(SHORTFALL_TOLERANCE_S, SHORTFALL_TOLERANCE_FRACTION * promised_s)
    if decoded_s + tolerance < promised_s:
        raise InvalidInputError(
            f"{what} is cut short: its header promises {promised_s:.2f} s of audio but only {decoded_s:.2f} s "
            "could be decoded; re-download or re-export the file (edgetf never transcribes a partial file silently)"
        )


def _promised_seconds(stream: Any, container: Any) -> float | None:
    """The audio track's duration as its container states it (None when unknown). Matroska/webm state it once,
    for the whole segment, in the header; elsewhere a container-wide duration may be an estimate from the
    bit rate, which a cut file shares, so only the stream's own is trusted."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if "matroska" in container.format.name and container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None
