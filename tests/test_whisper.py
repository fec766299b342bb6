"""Whisper speech recognition vs transformers' pipeline on tiny bundles (multilingual and English-only).

Random weights say nonsense, repetitively; parity is equality with the reference's nonsense, including
beam search (the pipeline's default of 5 beams), language detection, timestamps and chunk merging.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import edgetf
from edgetf.audio import load_audio
from edgetf.audio.samples import parity_signals, speech_like, synthesized_speech
from edgetf.errors import InvalidInputError

SR = 16000
ASR = "automatic-speech-recognition"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def multi(tiny):
    return tiny.get("whisper-tiny")


@pytest.fixture(scope="module")
def pipe(multi):
    return edgetf.pipeline(ASR, multi.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ref(multi, reference):
    return reference(ASR, multi)


@pytest.fixture(scope="module")
def english(tiny):
    return tiny.get("whisper-tiny-en")


@pytest.fixture(scope="module")
def en_pipe(english):
    return edgetf.pipeline(ASR, english.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def en_ref(english, reference):
    return reference(ASR, english)


def _same(pipe, ref, audio, **options):
    expected = ref(audio.copy() if isinstance(audio, np.ndarray) else dict(audio), **options)
    got = pipe(audio, **options)
    assert got == expected, (options, got, expected)
    return got


# ------------------------------------------------------------------------------------------ features
def test_log_mel_matches_reference(pipe, ref) -> None:
    fe = ref.feature_extractor
    signals = parity_signals()
    signals["long"] = speech_like(35.0, SR, 3).astype(np.float32)
    for name, audio in signals.items():
        expected = fe(audio, sampling_rate=SR, return_tensors="np")["input_features"][0]
        got = pipe.features(audio)
        assert got.shape == expected.shape == (80, 3000)
        assert np.abs(got - expected).max() <= 1e-4, name


# ------------------------------------------------------------------------------------------ short-form parity
def test_default_decoding_matches_reference(pipe, ref) -> None:
    # pipeline defaults: 5 beams, generation_config's max_length, language detection, <|notimestamps|>
    texts = [_same(pipe, ref, audio)["text"] for audio in parity_signals().values()]
    assert all(isinstance(t, str) and t for t in texts)


@pytest.mark.parametrize(
    "options",
    [
        {"return_timestamps": True},
        {"generate_kwargs": {"language": "french"}},
        {"language": "de", "return_timestamps": True, "return_language": True},
        {"task": "translate"},
        {"return_language": True},
        {"num_beams": 1, "max_new_tokens": 30},
        {"generate_kwargs": {"max_new_tokens": 8, "num_beams": 2}, "return_timestamps": True},
    ],
)
def test_options_match_reference(pipe, ref, options) -> None:
    got = _same(pipe, ref, parity_signals()["speechlike"], **options)
    if options.get("return_timestamps"):
        stamps = [c["timestamp"] for c in got["chunks"]]
        assert stamps and all(s[0] is not None for s in stamps)
        assert [s[0] for s in stamps] == sorted(s[0] for s in stamps)


def test_timestamps_on_more_signals(pipe, ref) -> None:
    signals = parity_signals()
    for name in ("noise", "short"):  # speech-like in test_options_match_reference, silence below
        _same(pipe, ref, signals[name], return_timestamps=True)


def test_prompt_tokens_follow_language_and_task(pipe) -> None:
    tok = pipe.tokenizer
    audio = parity_signals()["tone"]
    settings = pipe.settings
    from edgetf.whisper.tokens import prompt_tokens

    sot = tok.token_to_id("<|startoftranscript|>")
    assert (pipe.tokens.sot, pipe.tokens.no_timestamps) == (sot, tok.token_to_id("<|notimestamps|>"))
    assert pipe.tokens.timestamp_begin == tok.token_to_id("<|0.00|>")

    def detect() -> int:
        return tok.token_to_id("<|ja|>")

    names = lambda ids: [tok.id_to_token(i) for i in ids]  # noqa: E731
    default = prompt_tokens(settings, sot, language=None, task=None, return_timestamps=False, detect=detect)
    assert names(default) == ["<|startoftranscript|>", "<|ja|>", "<|transcribe|>", "<|notimestamps|>"]
    fr = prompt_tokens(settings, sot, language="French", task="translate", return_timestamps=True, detect=detect)
    assert names(fr) == ["<|startoftranscript|>", "<|fr|>", "<|translate|>"]
    assert pipe(audio, language="<|fr|>") == pipe(audio, language="fr") == pipe(audio, language="french")


# ------------------------------------------------------------------------------------------ long audio
@pytest.fixture(scope="module")
def clip70() -> np.ndarray:
    return speech_like(70.0, SR, 7).astype(np.float32)


def test_70s_chunked_matches_reference(pipe, ref, clip70) -> None:
    got = _same(pipe, ref, clip70, chunk_length_s=30, batch_size=2, max_new_tokens=20)
    assert got["text"]
    timed = _same(pipe, ref, clip70, chunk_length_s=30, return_timestamps=True, max_new_tokens=20)
    assert timed["chunks"][-1]["timestamp"][0] > 30.0  # times continue across chunks


def test_chunked_with_uneven_strides_matches_reference(pipe, ref, clip70) -> None:
    clip = clip70[: 35 * SR]
    _same(pipe, ref, clip, chunk_length_s=12, stride_length_s=[2, 3], return_timestamps=True, max_new_tokens=10)


def test_long_form_matches_reference(pipe, ref) -> None:
    clip = speech_like(40.0, SR, 8).astype(np.float32)
    got = _same(pipe, ref, clip, return_timestamps=True)
    assert got["chunks"][-1]["timestamp"][1] > 30.0
    with pytest.raises(ValueError, match="3000 mel input features"):
        ref(clip.copy())
    with pytest.raises(InvalidInputError, match="return_timestamps=True"):
        pipe(clip)


# ------------------------------------------------------------------------------------------ inputs
def test_dict_with_stride_and_extra_keys(pipe, ref) -> None:
    item = {"raw": parity_signals()["speechlike"], "sampling_rate": SR, "stride": (4000, 4000), "id": 3}
    got = _same(pipe, ref, item, return_timestamps=True)
    assert got["id"] == [3]


def test_44k1_stereo_file(pipe, ref, tmp_path) -> None:
    # transformers needs ffmpeg (files) and torchaudio (resampling), absent here: the reference gets
    # edgetf's decoded audio, so this checks everything after decoding (resampling is in test_audio.py).
    rate = 44100
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([speech_like(2.0, rate, 1), speech_like(2.0, rate, 2)], axis=1), rate)
    decoded = load_audio(str(path), SR).samples
    assert pipe(str(path), return_timestamps=True) == ref(decoded.copy(), return_timestamps=True)


def test_synthesized_speech(pipe, ref, en_pipe, en_ref, tmp_path) -> None:
    path = synthesized_speech("Hello, this is a test of speech recognition on a small device.", tmp_path)
    if path is None:  # no espeak-ng on this machine: a speech-like signal at 22.05 kHz instead
        path = tmp_path / "speech.wav"
        sf.write(path, speech_like(3.0, 22050, 9), 22050)
    decoded = load_audio(str(path), SR).samples
    assert pipe(str(path)) == ref(decoded.copy())
    assert en_pipe(str(path), return_timestamps=True) == en_ref(decoded.copy(), return_timestamps=True)


# ------------------------------------------------------------------------------------------ English-only model
def test_english_only_model_matches_reference(en_pipe, en_ref) -> None:
    for name, audio in parity_signals().items():
        if name in ("noise", "speechlike"):
            _same(en_pipe, en_ref, audio)
    _same(en_pipe, en_ref, parity_signals()["speechlike"], return_timestamps=True)


def test_english_only_model_rejects_language_and_task(en_pipe, en_ref) -> None:
    audio = parity_signals()["tone"]
    for options in ({"language": "en"}, {"task": "transcribe"}):
        with pytest.raises(ValueError, match="English-only"):
            en_ref(audio.copy(), generate_kwargs=options)
        with pytest.raises(InvalidInputError, match="English-only"):
            en_pipe(audio, **options)


# ------------------------------------------------------------------------------------------ quantized
def test_q8_token_agreement(multi, pipe, capsys) -> None:
    q8 = edgetf.pipeline(ASR, multi.bundle, dtype="q8")
    same = total = exact = 0
    signals = {k: v for k, v in parity_signals().items() if k in ("tone", "noise", "speechlike")}
    for audio in signals.values():
        a, b = q8.token_ids(audio)[0], pipe.token_ids(audio)[0]
        n = min(len(a), len(b))
        same += int(np.sum(a[:n] == b[:n]))
        total += max(len(a), len(b))
        exact += bool(len(a) == len(b) and np.all(a == b))
    with capsys.disabled():
        print(
            f"\n[whisper-tiny q8] token agreement with fp32 (= reference): {same / total:.3f}; "
            f"identical sequences {exact}/{len(signals)}"
        )
    assert same / total >= 0.9


# ------------------------------------------------------------------------------------------ bad input
def test_silence_as_reference(pipe, ref) -> None:
    _same(pipe, ref, np.zeros(SR * 2, np.float32), return_timestamps=True)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"return_timestamps": "char"}, "not 'char'"),
        ({"return_segments": True}, "does not accept"),
        ({"language": "klingon"}, "unsupported language"),
        ({"task": "summarize"}, "not supported"),
        ({"max_new_tokens": 500}, "decoder positions"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"chunk_length_s": "30"}, "chunk_length_s"),
        ({"generate_kwargs": [1]}, "generate_kwargs must be a dict"),
        ({"decoder_kwargs": {"beam_width": 3}}, "language-model decoder"),
    ],
)
def test_bad_options(pipe, options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        pipe(parity_signals()["tone"], **options)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(0, np.float32),
        np.array([0.0, np.nan], np.float32),
        np.zeros((2, 2, 10), np.float32),
        {"raw": np.zeros(10, np.float32), "sampling_rate": 0},
        b"\x00\x01garbage",
    ],
)
def test_bad_audio(pipe, bad) -> None:
    with pytest.raises(InvalidInputError):
        pipe(bad)


def test_truncated_file(pipe, tmp_path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, parity_signals()["speechlike"], SR)
    data = path.read_bytes()
    path.write_bytes(data[:30])
    with pytest.raises(InvalidInputError, match="cannot decode"):
        pipe(str(path))


def test_demo_input(pipe) -> None:
    demo = pipe.demo_input()
    assert demo.shape == (2 * SR,) and demo.dtype == np.float32
    assert isinstance(pipe(demo)["text"], str)
    assert pipe.cli_inputs(["a.wav"]) == "a.wav"
    assert type(pipe).__name__ == "WhisperSpeechRecognitionPipeline" and pipe.timestamps_option() is True
