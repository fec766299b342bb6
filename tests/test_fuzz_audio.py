"""Property-based tests of audio input: any array, dict, bytes or string either gives the documented output
or raises a documented edgetf error (never IndexError, TypeError, ZeroDivisionError or an onnxruntime error)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgetf
from edgetf.audio.chunks import chunk_sizes, iter_chunks, rescale_stride
from edgetf.audio.features import WhisperFeatures, normalize_wav2vec2
from edgetf.audio.io import load_audio, resample
from edgetf.errors import EdgetfError, InvalidInputError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

DTYPES = st.sampled_from(
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool", "complex64", "object"]
)
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, 1.0, -1.0])


@st.composite
def arrays(draw, max_side: int = 4000) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    shape = draw(
        st.one_of(
            st.tuples(st.integers(0, max_side)),
            st.tuples(st.integers(0, max_side)),
            st.just(()),
            st.tuples(st.integers(0, 70), st.integers(0, max_side)),
            st.tuples(st.integers(0, max_side), st.integers(0, 70)),
            st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 100)),
        )
    )
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * draw(
        st.sampled_from([1e-3, 0.5, 1e4, 1e40])
    )
    if values.size and draw(st.booleans()):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(SPECIAL)
    with np.errstate(all="ignore"):
        return np.asarray(values).astype(dtype)  # (np.asarray: keep a 0-d array an array)


def _not_slow(rate) -> bool:
    """Rates below 1 kHz upsample a 2000-sample array to minutes of audio (gigabytes in the conv encoder)."""
    return not (isinstance(rate, (int, float)) and 0 < rate < 1000)


RATES = st.one_of(
    st.sampled_from([8000, 16000, 22050.0, 44100, np.int32(48000), 192000]),
    st.sampled_from([0, -16000, 10**12, 2**53, 1e300, 16000.5, math.nan, math.inf, "16000", None, True]),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
).filter(_not_slow)


@st.composite
def audio_dicts(draw) -> dict:
    out = {draw(st.sampled_from(["array", "raw", "array", "raw", "samples"])): draw(arrays(max_side=2000))}
    if draw(st.integers(0, 5)) != 5:  # (hypothesis favours 0: the rate is usually there)
        out["sampling_rate"] = draw(RATES)
    if draw(st.booleans()):
        out[draw(st.sampled_from(["path", "id", "stride", "text"]))] = draw(
            st.one_of(st.text(max_size=5), st.tuples(st.integers(-2, 2000), st.integers(-2, 2000)))
        )
    return out


def wav_bytes(samples: int, rate: int = 16000, channels: int = 1, truncate: int = 0) -> bytes:
    data = (np.sin(np.arange(samples * channels) / 5) * 8000).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    header += b"data" + struct.pack("<I", len(data))
    blob = header + data
    return blob[: len(blob) - truncate] if truncate else blob


ANY_AUDIO = st.one_of(
    arrays(),
    arrays(),
    audio_dicts(),
    audio_dicts(),
    st.binary(max_size=200),
    st.builds(
        wav_bytes, st.integers(0, 3000), st.sampled_from([8000, 16000, 44100]), st.integers(1, 3), st.integers(0, 60)
    ),
    st.text(max_size=30),
    st.none(),
    st.integers(),
    st.lists(st.floats(), max_size=5),
)


def check_load(value) -> None:
    try:
        audio = load_audio(value, 16000, allow_stride=True)
    except InvalidInputError:
        return
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1 and audio.samples.shape[0] > 0
    assert np.isfinite(audio.samples).all() and audio.sampling_rate == 16000


@FAST
@given(ANY_AUDIO)
@example({"array": np.ones(2000, np.float32), "sampling_rate": 2**53})  # soxr never returned
def test_load_audio_gives_finite_mono_or_invalid_input(value):
    check_load(value)


@pytest.fixture(scope="module")
def ctc(tiny):
    return edgetf.pipeline("automatic-speech-recognition", tiny.get("wav2vec2-ctc").bundle)


@pytest.fixture(scope="module")
def keyword(tiny):
    return edgetf.pipeline("audio-classification", tiny.get("wav2vec2-keyword-spotting").bundle)


@pytest.fixture(scope="module")
def whisper(tiny):
    return edgetf.pipeline("automatic-speech-recognition", tiny.get("whisper-tiny-en").bundle)


@FAST
@given(ANY_AUDIO)
@example(np.zeros(1, np.float32))  # shorter than the conv encoder's receptive field: was an onnxruntime error
@example(np.zeros((0, 5), np.float32))  # empty 2-D: was "contains 5 NaN samples"
@example({"array": np.ones(1000, np.float32), "sampling_rate": 10**9})  # resampled to 0 samples
@example({"array": np.ones(3, np.float32), "sampling_rate": 1})
@example({"array": np.ones(2000, np.float32), "sampling_rate": 1e300})  # soxr never returned
@example({"array": np.ones(2000, np.float32), "sampling_rate": 16000, "text": ""})  # replaced the transcription
def test_ctc_transcribes_or_raises_invalid_input(ctc, value):
    try:
        out = ctc(value)
    except InvalidInputError:
        return
    assert isinstance(out, dict) and isinstance(out["text"], str)


@FAST
@given(ANY_AUDIO)
@example(np.ones(400, np.float32))
@example({"array": np.ones(1000, np.float32), "sampling_rate": 10**9})
def test_audio_classification_scores_or_raises_invalid_input(keyword, value):
    try:
        out = keyword(value)
    except InvalidInputError:
        return
    scores = [d["score"] for d in out]
    assert all(isinstance(d["label"], str) for d in out)
    assert all(math.isfinite(s) and 0 <= s <= 1 for s in scores) and sum(scores) <= 1 + 1e-4


@FEW
@given(st.one_of(arrays(max_side=20000), audio_dicts(), st.builds(wav_bytes, st.integers(0, 2000))))
def test_whisper_transcribes_or_raises_invalid_input(whisper, value):
    try:
        out = whisper(value, max_new_tokens=3, num_beams=1)
    except InvalidInputError:
        return
    assert isinstance(out, dict) and isinstance(out["text"], str)


# -- pure feature functions ------------------------------------------------------------------------
FINITE_AUDIO = hnp.arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1, 1, width=32))


@FAST
@given(FINITE_AUDIO, st.booleans())
def test_whisper_log_mel_shape_and_finite(samples, pad):
    fe = WhisperFeatures(feature_size=80, chunk_length=1)
    feats = fe(samples, pad_to_window=pad)
    frames = fe.nb_max_frames if pad else max(samples.shape[0], fe.n_fft // 2 + 1) // fe.hop_length
    assert feats.shape[0] == 80 and np.isfinite(feats).all()
    assert feats.shape[1] == frames or not pad and abs(feats.shape[1] - frames) <= 1


@FAST
@given(FINITE_AUDIO)
def test_wav2vec2_normalisation_is_finite_zero_mean(samples):
    x = normalize_wav2vec2(samples)
    assert x.dtype == np.float32 and x.shape == samples.shape and np.isfinite(x).all()
    assert abs(float(x.astype(np.float64).mean())) < 1e-2


@FAST
@given(FINITE_AUDIO, st.sampled_from([8000, 16000, 22050, 44100, 48000]), st.sampled_from([8000, 16000, 44100]))
def test_resample_length_follows_the_rate_ratio(samples, rate_in, rate_out):
    out = resample(samples, rate_in, rate_out)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert abs(out.shape[0] - samples.shape[0] * rate_out / rate_in) <= 1


@FAST
@given(
    st.one_of(st.floats(allow_nan=True), st.integers(-5, 100), st.none(), st.text(max_size=3)),
    st.one_of(
        st.none(), st.floats(allow_nan=True), st.tuples(st.floats(-1, 10), st.floats(-1, 10)), st.text(max_size=2)
    ),
    st.sampled_from([1, 8000, 16000]),
    st.sampled_from([1, 320]),
    st.integers(0, 100000),
)
@example(2.247116418577895e304, None, 8000, 1, 0)  # seconds * rate overflowed int()
@example(math.nan, None, 8000, 1, 0)
def test_chunk_plan_covers_the_audio(length_s, stride_s, rate, align, n):
    try:
        chunk, left, right = chunk_sizes(length_s, stride_s, rate, align)
    except EdgetfError:
        return
    assert chunk > left + right >= 0 and left >= 0 and right >= 0
    samples = np.arange(n, dtype=np.float32)
    chunks = list(iter_chunks(samples, chunk, left, right))
    covered = np.zeros(n, bool)
    for c in chunks:
        covered[c.samples.astype(np.int64)] = True
        frames, l_f, r_f = rescale_stride(c.stride, 1 / 320)
        assert min(l_f, r_f) >= 0 and l_f + r_f <= frames
    assert covered.all()
    assert all(not c.is_last for c in chunks[:-1]) and (not chunks or chunks[-1].is_last)


def test_ctc_chunks_drop_a_last_piece_too_short_for_the_encoder(ctc):
    """With stride 0 the last chunk can be a few samples, which the conv encoder cannot take (no frame)."""
    samples = np.random.default_rng(0).standard_normal(16000 + 10).astype(np.float32) * 0.1
    out = ctc(samples, chunk_length_s=0.5, stride_length_s=0)
    assert isinstance(out["text"], str)
    with pytest.raises(InvalidInputError, match="first audio chunk"):
        ctc(samples, chunk_length_s=0.02, stride_length_s=0)
