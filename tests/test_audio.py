"""Audio input and features: decoding, mono/rate conversion, bad input, Whisper log-Mel vs transformers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from edgetf.audio import features, load_audio
from edgetf.audio.io import check_sampling_rate, to_float32, tone
from edgetf.errors import InvalidInputError

SR = 16000


def _signals() -> dict[str, np.ndarray]:
    from edgetf.audio.samples import speech_like

    rng = np.random.default_rng(1)
    return {
        "silence": np.zeros(SR, np.float32),
        "tone": tone(2.0, SR, 440.0),
        "loud_tone": (0.99 * np.sin(2 * np.pi * 3000 * np.arange(SR) / SR)).astype(np.float32),
        "noise": rng.normal(0, 0.1, 3 * SR).astype(np.float32),
        "speechlike": speech_like(4.0, SR, 3).astype(np.float32),
        "very_short": rng.normal(0, 0.2, 50).astype(np.float32),
        "exactly_30s": rng.normal(0, 0.05, 30 * SR).astype(np.float32),
        "longer_than_30s": speech_like(33.0, SR, 4).astype(np.float32),
    }


# ----------------------------------------------------------------------------------- features vs reference
@pytest.mark.parametrize("bins", [80, 128])
def test_whisper_log_mel_matches_transformers(bins: int) -> None:
    from transformers import WhisperFeatureExtractor

    ref = WhisperFeatureExtractor(feature_size=bins)
    ours = features.WhisperFeatures.from_config(ref.to_dict())
    assert ours.feature_size == bins
    for name, audio in _signals().items():
        expected = ref(audio, sampling_rate=SR, return_tensors="np")["input_features"][0]
        got = ours(audio)
        assert got.shape == expected.shape == (bins, 3000), name
        assert got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-4, (name, float(np.abs(got - expected).max()))


def test_whisper_log_mel_longest_padding_matches_transformers() -> None:
    from transformers import WhisperFeatureExtractor

    ref = WhisperFeatureExtractor()
    ours = features.WhisperFeatures()
    audio = _signals()["longer_than_30s"]
    expected = ref(audio, sampling_rate=SR, truncation=False, padding="longest", return_tensors="np")["input_features"][
        0
    ]
    got = ours(audio, pad_to_window=False)
    assert got.shape == expected.shape == (80, audio.shape[0] // 160)
    assert np.abs(got - expected).max() <= 1e-4


def test_mel_filters_match_transformers() -> None:
    from transformers.audio_utils import mel_filter_bank

    for bins in (80, 128):
        expected = mel_filter_bank(
            num_frequency_bins=201,
            num_mel_filters=bins,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=16000,
            norm="slaney",
            mel_scale="slaney",
        )
        np.testing.assert_allclose(features.mel_filters(201, bins, 16000), expected, rtol=1e-10, atol=1e-12)


def test_wav2vec2_normalisation_matches_transformers() -> None:
    from transformers import Wav2Vec2FeatureExtractor

    ref = Wav2Vec2FeatureExtractor(do_normalize=True)
    ours = features.Wav2Vec2Features.from_config(ref.to_dict())
    for name, audio in _signals().items():
        expected = ref(audio, sampling_rate=SR, return_tensors="np")["input_values"][0]
        got = ours(audio)
        assert got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-5, name
    off = features.Wav2Vec2Features(do_normalize=False)
    audio = _signals()["tone"]
    np.testing.assert_array_equal(off(audio), audio)


# ----------------------------------------------------------------------------------- loading
def _wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def test_array_at_model_rate_is_unchanged() -> None:
    audio = tone(1.0)
    got = load_audio(audio, SR)
    assert got.samples.dtype == np.float32 and got.sampling_rate == SR
    np.testing.assert_array_equal(got.samples, audio)
    got64 = load_audio(audio.astype(np.float64), SR)
    np.testing.assert_array_equal(got64.samples, audio)


def test_integer_pcm_is_scaled() -> None:
    pcm = np.array([0, 16384, -32768, 32767], np.int16)
    np.testing.assert_allclose(to_float32(pcm), [0.0, 0.5, -1.0, 32767 / 32768])
    np.testing.assert_allclose(to_float32(np.array([128, 0, 255], np.uint8)), [0.0, -1.0, 127 / 128])
    np.testing.assert_allclose(to_float32(np.array([2**30], np.int32)), [0.5])


def test_stereo_arrays_are_averaged() -> None:
    left, right = tone(1.0, SR, 440), tone(1.0, SR, 880)
    channels_first = np.stack([left, right])
    channels_last = channels_first.T.copy()
    expected = (left.astype(np.float64) + right) / 2
    for arr in (channels_first, channels_last):
        np.testing.assert_allclose(load_audio(arr, SR).samples, expected, atol=1e-7)


@pytest.mark.parametrize(
    "fmt,subtype,suffix", [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg")]
)
def test_files_and_bytes_decode(tmp_path, fmt: str, subtype: str, suffix: str) -> None:
    audio = tone(1.0, SR, 440)
    data = _wav_bytes(audio, SR, subtype, fmt)
    path = tmp_path / f"a.{suffix}"
    path.write_bytes(data)
    from_path, from_bytes = load_audio(str(path), SR), load_audio(data, SR)
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)
    tol = 1e-3 if subtype == "PCM_16" else 0.05  # vorbis is lossy
    assert from_path.samples.shape[0] == audio.shape[0]
    assert np.abs(from_path.samples - audio).max() < tol


def test_mp3_decodes_when_libsndfile_supports_it(tmp_path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.fail(f"libsndfile {sf.__libsndfile_version__} has no MP3; edgetf documents mp3 support with >= 1.1")
    audio = tone(1.0, SR, 440)
    path = tmp_path / "a.mp3"
    sf.write(path, audio, SR, format="MP3")
    got = load_audio(path, SR).samples
    # mp3 adds encoder delay/padding; compare the tone's level rather than samples
    assert abs(got.shape[0] - audio.shape[0]) < 2000
    assert abs(np.sqrt(np.mean(got**2)) - np.sqrt(np.mean(audio**2))) < 0.05


def test_44k1_stereo_file_is_resampled_and_mixed(tmp_path) -> None:
    from scipy.signal import resample_poly

    rate = 44100
    t = np.arange(int(2.0 * rate)) / rate
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate, subtype="FLOAT")
    got = load_audio(path, SR)
    assert got.samples.shape[0] == 2 * SR
    # an independent band-limited resampler (scipy's polyphase FIR) agrees away from the edges
    # mixed as ffmpeg -ac 1 (transformers' ffmpeg_read): (L + R) / sqrt(2)
    expected = resample_poly(stereo.sum(axis=1) / np.sqrt(2), 160, 441)
    core = slice(400, -400)
    assert np.abs(got.samples[core] - expected[core]).max() < 5e-3
    # the same audio given as a dict (an array: channels averaged, as transformers) resamples identically
    as_dict = load_audio({"array": stereo.T.astype(np.float32), "sampling_rate": rate}, SR)
    assert np.abs(as_dict.samples * np.sqrt(2) - got.samples).max() < 1e-5


def test_dict_forms() -> None:
    audio = tone(1.0)
    a = load_audio({"raw": audio, "sampling_rate": SR}, SR)
    b = load_audio({"array": audio, "sampling_rate": np.int64(SR), "path": "x.wav"}, SR)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert b.extra == {}  # datasets' path key is dropped, as transformers does
    c = load_audio({"raw": audio, "sampling_rate": 8000, "stride": (800, 400), "id": 3}, SR, allow_stride=True)
    assert c.samples.shape[0] == 2 * audio.shape[0] and c.stride == (1600, 800) and c.extra == {"id": 3}
    original = {"raw": audio, "sampling_rate": SR}
    load_audio(original, SR)
    assert set(original) == {"raw", "sampling_rate"}  # caller's dict is not mutated


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", None, True, float("nan")])
def test_bad_sampling_rates(rate) -> None:
    with pytest.raises(InvalidInputError, match="sampling_rate"):
        load_audio({"raw": tone(0.1), "sampling_rate": rate}, SR)


def test_integral_float_rate_is_accepted() -> None:
    assert check_sampling_rate(16000.0) == 16000


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(0, np.float32), "no samples"),
        (np.array([0.1, np.nan, 0.2], np.float32), "NaN or infinite"),
        (np.array([0.1, np.inf], np.float32), "NaN or infinite"),
        (np.zeros((2, 3, 100), np.float32), "3-D"),
        (np.array(["a"]), "dtype"),
        (np.array([True, False]), "boolean"),
        ([0.1, 0.2], "unsupported audio input"),
        (12, "unsupported audio input"),
        (b"", "empty"),
        (b"RIFF\x00\x00not really a wav file at all", "cannot decode"),
        ({"raw": [0.1, 0.2], "sampling_rate": SR}, "numpy array"),
        ({"sampling_rate": SR}, "'raw'"),
        ({"raw": tone(0.1), "sampling_rate": SR, "stride": (1, 2)}, "only accepted"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        load_audio(bad, SR)


def test_bad_stride() -> None:
    with pytest.raises(InvalidInputError, match="larger than the audio"):
        load_audio({"raw": tone(0.01), "sampling_rate": SR, "stride": (100, 100)}, SR, allow_stride=True)
    with pytest.raises(InvalidInputError, match="pair"):
        load_audio({"raw": tone(0.01), "sampling_rate": SR, "stride": (-1, 2)}, SR, allow_stride=True)


def test_missing_and_truncated_files(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_audio(str(tmp_path / "missing.wav"), SR)
    with pytest.raises(InvalidInputError, match="URL"):
        load_audio("https://example.com/a.wav", SR)
    data = _wav_bytes(tone(1.0), SR)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:20])
    with pytest.raises(InvalidInputError, match="cannot decode"):
        load_audio(header_only, SR)
    # a file cut mid-data is an error (libsndfile alone would decode the samples that are there; issue 17)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="cut-short WAV"):
        load_audio(cut, SR)
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    with pytest.raises(InvalidInputError, match="cannot decode"):
        load_audio(garbage, SR)
