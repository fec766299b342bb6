"""Sample agreement of edgetf's media decoding with transformers' ffmpeg_read (the ffmpeg binary of the
imageio-ffmpeg wheel), per container/codec: max abs diff and correlation over the common length, at 16 kHz.

Usage: python benchmarks/media_agreement.py   (needs the [media] and [test] extras and transformers)
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    import imageio_ffmpeg
    from test_media import encode
    from transformers.pipelines.audio_utils import ffmpeg_read

    from edgetf.audio.io import load_audio
    from edgetf.audio.samples import speech_like

    folder = tempfile.mkdtemp()
    os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), Path(folder) / "ffmpeg")
    os.environ["PATH"] = folder + os.pathsep + os.environ["PATH"]
    cases = [("mp3", "libmp3lame"), ("ipod", "aac"), ("mp4", "aac"), ("mov", "aac"), ("matroska", "aac")]
    cases += [("matroska", "libopus"), ("ogg", "libopus"), ("webm", "libopus")]
    for rate in (44100, 48000):
        signal = (0.8 * speech_like(3.0, rate, 1)).astype(np.float32)
        blobs = {f"{c}/{k}": encode(c, k, signal, 48000 if "opus" in k else rate) for c, k in cases}
        for fmt, sub in (("OGG", "VORBIS"), ("FLAC", "PCM_16"), ("WAV", "PCM_16")):
            buf = io.BytesIO()
            sf.write(buf, signal, rate, format=fmt, subtype=sub)
            blobs[f"{fmt.lower()}/{sub.lower()} (libsndfile)"] = buf.getvalue()
        for name, data in blobs.items():
            ref, got = ffmpeg_read(data, 16000), load_audio(data, 16000).samples
            n = min(len(ref), len(got))
            diff = float(np.abs(ref[:n] - got[:n]).max())
            corr = float(np.corrcoef(ref[:n], got[:n])[0, 1])
            print(f"{rate} {name:28s} samples ref {len(ref)} edgetf {len(got)}  max|diff| {diff:.2e}  corr {corr:.7f}")


if __name__ == "__main__":
    main()
