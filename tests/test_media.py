"""Media input (edgetf.audio.media, the [media] extra): containers encoded here with PyAV from a known signal,
decoded as transformers' ffmpeg_read decodes them (the ffmpeg binary of the imageio-ffmpeg wheel), and the
errors for files that are not audio, have no audio track or are cut short."""

import io
import os

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetf.audio.io import load_audio, wav_shortfall
from edgetf.audio.samples import speech_like
from edgetf.errors import InvalidInputError

av = pytest.importorskip("av")
SR = 16000
# (container, codec, input rate): decoded by ffmpeg's libraries through PyAV, except mp3/ogg (libsndfile first)
CASES = [
    ("mp3", "libmp3lame", 44100),
    ("ipod", "aac", 44100),  # .m4a
    ("mp4", "aac", 48000),
    ("mov", "aac", 48000),
    ("matroska", "aac", 44100),
    ("matroska", "libopus", 48000),
    ("ogg", "libopus", 48000),
    ("webm", "libopus", 48000),
]


def encode(container: str, codec: str, signal: np.ndarray, rate: int, channels: int = 1, video: bool = False) -> bytes:
    """``signal`` (mono float) encoded with PyAV's encoders into ``container``; an empty signal gives a
    track with no samples, ``codec=None`` no audio track at all (with ``video``, a short video track)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        if video:
            vstream = out.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
            for _ in range(5):
                for packet in vstream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
        if codec is None:
            return _close(out, buf)
        stream = out.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        ctx = stream.codec_context
        target = ctx.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=target, layout=stream.layout, rate=rate, frame_size=ctx.frame_size or None)
        frames = []
        out.start_encoding()  # writes the header even when no packet follows
        if signal.size:
            planar = np.ascontiguousarray(np.tile(signal.astype(np.float32)[None], (channels, 1)))
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout)
            frame.sample_rate = rate
            frames = resampler.resample(frame) + resampler.resample(None)
        for frame in frames:
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _close(out, buf) -> bytes:
    out.close()
    return buf.getvalue()


@pytest.fixture(scope="module")
def ffmpeg_read(tmp_path_factory):
    """transformers' own ffmpeg_read, with the imageio-ffmpeg wheel's binary on PATH."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    audio_utils = pytest.importorskip("transformers.pipelines.audio_utils")
    folder = tmp_path_factory.mktemp("ffbin")
    os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), folder / "ffmpeg")
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{folder}{os.pathsep}{old}"
    yield audio_utils.ffmpeg_read
    os.environ["PATH"] = old


def signal(rate: int, seconds: float = 2.0) -> np.ndarray:
    return (0.8 * speech_like(seconds, rate, 1)).astype(np.float32)


@pytest.mark.parametrize(("container", "codec", "rate"), CASES, ids=[f"{c}-{k}" for c, k, _ in CASES])
def test_decodes_like_transformers_ffmpeg_read(container, codec, rate, ffmpeg_read):
    data = encode(container, codec, signal(rate), rate)
    ref = ffmpeg_read(data, SR)
    got = load_audio(data, SR).samples
    # mp3: ffmpeg keeps up to one frame (1152 samples) of encoder padding that mpg123 (gapless) trims
    assert abs(len(got) - len(ref)) <= (1152 * SR // rate + 1 if container == "mp3" else 0)
    n = min(len(got), len(ref))
    assert np.abs(got[:n] - ref[:n]).max() < 2e-3  # libsoxr vs libswresample pass-band ripple, decoder versions
    assert np.corrcoef(got[:n], ref[:n])[0, 1] > 0.99999


@pytest.mark.parametrize(("container", "codec"), [("webm", "libopus"), ("ipod", "aac"), ("ogg", "libopus")])
def test_stereo_downmix_is_ffmpegs(container, codec, ffmpeg_read):
    """PyAV runs ffmpeg's own resampler and down-mix (stereo -> (L + R) / sqrt 2), so the samples are ffmpeg's."""
    from edgetf.audio.media import decode_media

    data = encode(container, codec, signal(48000), 48000, channels=2)
    ref = ffmpeg_read(data, SR)
    got = decode_media(data, SR, "x")
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 5e-4


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_stereo_sndfile_downmix_is_ffmpegs(fmt, ffmpeg_read):
    """Stereo files libsndfile reads are mixed as ffmpeg -ac 1 mixes them (transformers' ffmpeg_read)."""
    t = np.arange(SR) / SR
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, SR, format=fmt)
    data = buffer.getvalue()
    ref = ffmpeg_read(data, SR)
    got = load_audio(data, SR).samples
    # ffmpeg's vorbis decoder keeps up to one block of end padding that libvorbis trims
    assert len(got) == len(ref) if fmt != "OGG" else 0 <= len(ref) - len(got) <= 1024
    n = len(got)
    assert np.abs(got[:n] - ref[:n]).max() < 2e-3  # the same level (an average would be 1/sqrt(2) of it)


def test_path_bytes_and_file_object_agree(tmp_path):
    data = encode("ipod", "aac", signal(44100), 44100)
    path = tmp_path / "clip.m4a"
    path.write_bytes(data)
    from_path = load_audio(str(path), SR).samples
    with open(path, "rb") as handle:
        from_file = load_audio(handle, SR).samples
    np.testing.assert_array_equal(from_path, load_audio(data, SR).samples)
    np.testing.assert_array_equal(from_path, from_file)
    np.testing.assert_array_equal(from_path, load_audio(io.BytesIO(data), SR).samples)
    with open(path) as text_handle, pytest.raises(InvalidInputError, match="binary mode"):
        load_audio(text_handle, SR)


def test_ogg_vorbis_from_libsndfile_matches_ffmpeg(ffmpeg_read):
    buf = io.BytesIO()
    sf.write(buf, signal(44100), 44100, format="OGG", subtype="VORBIS")
    ref, got = ffmpeg_read(buf.getvalue(), SR), load_audio(buf.getvalue(), SR).samples
    assert got.shape == ref.shape and np.abs(got - ref).max() < 2e-3


# -- errors ------------------------------------------------------------------------------------------------------
def test_video_without_audio_track():
    data = encode("mp4", None, np.zeros(0), 0, video=True)
    with pytest.raises(InvalidInputError, match="no audio track.*video"):
        load_audio(data, SR)


@pytest.mark.parametrize(("container", "codec"), [("matroska", "libopus"), ("ogg", "libopus"), ("ipod", "aac")])
def test_zero_length_audio_track(container, codec):
    data = encode(container, codec, np.zeros(0, np.float32), 48000)
    with pytest.raises(InvalidInputError, match="no audio track|no samples|ends before any audio"):
        load_audio(data, SR)


@pytest.mark.parametrize("blob", [np.random.default_rng(0).bytes(4000), b"ID3" + bytes(500), b"\x1aE\xdf\xa3garbage"])
def test_random_and_corrupt_bytes(blob):
    with pytest.raises(InvalidInputError, match="cannot decode the given bytes"):
        load_audio(blob, SR)


@pytest.mark.parametrize(
    ("container", "codec"),
    [("mp3", "libmp3lame"), ("ipod", "aac"), ("mov", "aac"), ("matroska", "aac"), ("webm", "libopus")],
)
def test_cut_short_media_is_an_error(container, codec):
    data = encode(container, codec, signal(48000, 3.0), 48000)
    with pytest.raises(InvalidInputError, match="cut short|cannot decode"):
        load_audio(data[: int(len(data) * 0.6)], SR)


def test_cut_short_wav_is_an_error(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, signal(SR), SR, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    assert wav_shortfall(data, len(data)) is None
    cut = data[: len(data) - 1000]
    promised, present, block = wav_shortfall(cut, len(cut))
    assert (promised - present, block) == (1000, 2)
    path = tmp_path / "cut.wav"
    path.write_bytes(cut)
    for source in (cut, str(path)):
        with pytest.raises(InvalidInputError, match="cut-short WAV.*promises 32000 frames.*holds 31500"):
            load_audio(source, SR)
    streamed = data[:40] + (0xFFFFFFFF).to_bytes(4, "little") + data[44:]  # unknown size, as a pipe writes it
    assert wav_shortfall(streamed, len(streamed)) is None
    assert load_audio(streamed, SR).samples.shape == (32000,)


def test_without_pyav_the_error_names_the_extra(monkeypatch):
    from edgetf.audio import media

    monkeypatch.setattr(media, "available", lambda: False)
    data = encode("ipod", "aac", signal(44100), 44100)
    with pytest.raises(InvalidInputError, match=r"pip install edgetf\[media\].*|m4a/aac") as err:
        load_audio(data, SR)
    assert "pip install edgetf[media]" in str(err.value) and "m4a/aac" in str(err.value)


def test_asr_pipelines_and_cli_read_media(tiny, tmp_path):
    """Both ASR pipelines, audio-classification and `python -m edgetf run` take an .m4a as its decoded samples."""
    import json
    import subprocess
    import sys

    import edgetf

    data = encode("ipod", "aac", signal(44100, 1.5), 44100)
    path = tmp_path / "clip.m4a"
    path.write_bytes(data)
    samples = load_audio(data, SR).samples
    for name, task, options in (
        ("wav2vec2-ctc", "automatic-speech-recognition", {}),
        ("whisper-tiny", "automatic-speech-recognition", {"max_new_tokens": 10}),
        ("wav2vec2-keyword-spotting", "audio-classification", {}),
    ):
        pipe = edgetf.pipeline(task, tiny.get(name).bundle)
        assert pipe(str(path), **options) == pipe(samples, **options), name
    bundle = str(tiny.get("wav2vec2-ctc").bundle)
    cmd = [sys.executable, "-m", "edgetf", "run", "automatic-speech-recognition", bundle, str(path), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == edgetf.pipeline("asr", bundle)(samples)["text"]


@settings(max_examples=80, deadline=None)
@given(cut=st.integers(0, 2000), junk=st.binary(max_size=64))
def test_wav_shortfall_property(cut, junk):
    """Any prefix of a WAV: a shortfall is reported exactly when a whole frame of the data chunk is missing;
    arbitrary bytes never raise."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(500, np.float32), SR, format="WAV", subtype="PCM_16")  # 44-byte header + 1000 bytes
    data = buf.getvalue()
    prefix = data[: len(data) - cut]
    got = wav_shortfall(prefix, len(prefix))
    if len(prefix) < 44:
        assert got is None
    else:
        assert (got is not None) == (cut >= 2)
    assert wav_shortfall(junk, len(junk)) is None or junk.startswith(b"RIFF")
