"""Wav2Vec2 CTC speech recognition and audio classification vs transformers' pipelines on tiny bundles."""

from __future__ import annotations

import json

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
def ctc(tiny):
    return tiny.get("wav2vec2-ctc")


@pytest.fixture(scope="module")
def ctc_pipe(ctc):
    return edgetf.pipeline(ASR, ctc.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ctc_ref(ctc, reference):
    return reference(ASR, ctc)


@pytest.fixture(scope="module")
def long_clip() -> np.ndarray:
    return speech_like(70.0, SR, 7).astype(np.float32)


def _signals() -> dict[str, np.ndarray]:
    signals = parity_signals()
    signals["loud"] = (0.99 * np.sign(np.sin(2 * np.pi * 200 * np.arange(SR) / SR))).astype(np.float32)
    return signals


# ------------------------------------------------------------------------------------------ CTC parity
def test_ctc_text_matches_reference(ctc_pipe, ctc_ref) -> None:
    texts = []
    for name, audio in _signals().items():
        expected = ctc_ref(audio.copy())
        got = ctc_pipe(audio)
        assert got == expected, name
        texts.append(got["text"])
    assert len(set(texts)) > 2  # the random model does say different things to different signals


def test_ctc_features_match_reference(ctc_pipe, ctc_ref) -> None:
    fe = ctc_ref.feature_extractor
    for name, audio in _signals().items():
        expected = fe(audio, sampling_rate=SR, return_tensors="np")["input_values"][0]
        assert np.abs(ctc_pipe.features(audio) - expected).max() <= 1e-5, name


@pytest.mark.parametrize("kind", ["char", "word"])
def test_ctc_timestamps_match_reference(ctc_pipe, ctc_ref, kind: str) -> None:
    audio = _signals()["speechlike"]
    expected = ctc_ref(audio.copy(), return_timestamps=kind)
    got = ctc_pipe(audio, return_timestamps=kind)
    assert got == expected
    starts = [c["timestamp"][0] for c in got["chunks"]]
    assert starts == sorted(starts) and all(c["timestamp"][0] < c["timestamp"][1] for c in got["chunks"])


def test_ctc_70s_chunked_matches_reference(ctc_pipe, ctc_ref, long_clip) -> None:
    for options in (
        {"chunk_length_s": 10},
        {"chunk_length_s": 10, "stride_length_s": (2, 1), "return_timestamps": "word"},
    ):
        expected = ctc_ref(long_clip.copy(), **options)
        got = ctc_pipe(long_clip, **options)
        assert got == expected, options
    assert " " in got["text"] and len(got["chunks"]) > 1


def test_ctc_chunk_batching_does_not_change_results(ctc_pipe, long_clip) -> None:
    # transformers pads the last (shorter) chunk of a batch, which shifts its group-norm statistics;
    # edgetf never pads chunks together, so any batch_size gives the batch_size=1 result
    one = ctc_pipe(long_clip, chunk_length_s=10)
    assert ctc_pipe(long_clip, chunk_length_s=10, batch_size=4) == one
    assert ctc_pipe(long_clip, chunk_length_s=10, batch_size=3) == one


def test_ctc_long_unchunked_agrees_per_frame(ctc_pipe, ctc_ref, long_clip) -> None:
    # onnxruntime's group norm over 1.1M samples drifts ~1e-2 from float64 (torch ~4e-4): a rare argmax flip
    import torch

    values = ctc_ref.feature_extractor(long_clip, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        expected = ctc_ref.model(values).logits.argmax(-1)[0].numpy()
    got = ctc_pipe.token_ids(long_clip)[0]
    assert got.shape == expected.shape
    assert np.mean(got == expected) >= 0.99


def test_ctc_dict_input_with_stride_and_extra_keys(ctc_pipe, ctc_ref) -> None:
    audio = _signals()["speechlike"]
    item = {"raw": audio, "sampling_rate": SR, "stride": (4000, 3200), "id": 7}
    expected = ctc_ref(dict(item), return_timestamps="char")
    got = ctc_pipe(item, return_timestamps="char")
    assert got == expected and got["id"] == [7]
    assert set(item) == {"raw", "sampling_rate", "stride", "id"}


def test_ctc_44k1_stereo_file(ctc_pipe, ctc_ref, tmp_path) -> None:
    # transformers reads files with ffmpeg and resamples with torchaudio (neither installed here): the
    # reference gets edgetf's decoded 16 kHz mono audio, so this checks everything after decoding.
    rate = 44100
    left, right = speech_like(3.0, rate, 11), speech_like(3.0, rate, 12)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_16")
    decoded = load_audio(str(path), SR).samples
    assert decoded.shape[0] == 3 * SR
    assert ctc_pipe(str(path)) == ctc_ref(decoded.copy())
    assert ctc_pipe(path.read_bytes()) == ctc_pipe(str(path))


def test_ctc_synthesized_speech(ctc_pipe, ctc_ref, tmp_path) -> None:
    path = synthesized_speech("The quick brown fox jumps over the lazy dog.", tmp_path)
    if path is None:  # no espeak-ng on this machine: a speech-like signal at 22.05 kHz instead
        path = tmp_path / "speech.wav"
        sf.write(path, speech_like(2.5, 22050, 5), 22050)
    decoded = load_audio(str(path), SR).samples
    assert ctc_pipe(str(path), return_timestamps="word") == ctc_ref(decoded.copy(), return_timestamps="word")


def test_ctc_list_input(ctc_pipe, ctc_ref) -> None:
    signals = _signals()
    items = [signals["tone"], signals["noise"]]
    assert ctc_pipe(items) == ctc_ref([a.copy() for a in items])


def test_ctc_q8_token_agreement(ctc, ctc_ref, capsys) -> None:
    import torch

    q8 = edgetf.pipeline(ASR, ctc.bundle, dtype="q8")
    same = total = 0
    for audio in _signals().values():
        values = ctc_ref.feature_extractor(audio, sampling_rate=SR, return_tensors="pt")["input_values"]
        with torch.no_grad():
            expected = ctc_ref.model(values).logits.argmax(-1)[0].numpy()
        got = q8.token_ids(audio)[0]
        same += int(np.sum(got == expected))
        total += expected.shape[0]
    with capsys.disabled():
        print(f"\n[wav2vec2-ctc q8] frame token agreement with the fp32 reference: {same / total:.3f} ({total} frames)")
    assert same / total >= 0.9


def test_ctc_q8_recipe_recorded(ctc) -> None:
    manifest = json.loads((ctc.bundle / "edgetf.json").read_text())
    recipe = manifest["dtypes"]["q8"]["recipe"]["model"]
    assert recipe["preprocess"] is True and recipe["op_types"] == ["MatMul"]
    assert manifest["dtypes"]["q8"]["passed"] is True


# ------------------------------------------------------------------------------------------ CTC bad input
def test_ctc_silence_and_tiny_input_as_reference(ctc_pipe, ctc_ref) -> None:
    silence = np.zeros(SR // 2, np.float32)
    assert ctc_pipe(silence) == ctc_ref(silence.copy())


@pytest.mark.parametrize(
    "options,match",
    [
        ({"return_timestamps": True}, "'char' or 'word'"),
        ({"max_new_tokens": 5}, "only apply to Whisper"),
        ({"language": "en"}, "only apply to Whisper"),
        ({"chunk_length_s": -1}, "chunk_length_s"),
        ({"chunk_length_s": 1, "stride_length_s": 0.5}, "no audio between"),
        ({"chunk_length_s": 1, "stride_length_s": [1, 1]}, "longer than both strides"),
        ({"batch_size": 0}, "batch_size"),
        ({"beam_width": 3}, "does not accept"),
    ],
)
def test_ctc_bad_options(ctc_pipe, options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ctc_pipe(_signals()["tone"], **options)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(0, np.float32), np.full(100, np.nan, np.float32), np.zeros((1, 2, 3), np.float32), b"not audio", 3.5],
)
def test_ctc_bad_audio(ctc_pipe, bad) -> None:
    with pytest.raises(InvalidInputError):
        ctc_pipe(bad)


def test_ctc_demo_and_cli(ctc_pipe, tmp_path) -> None:
    demo = ctc_pipe.demo_input()
    assert demo.dtype == np.float32 and demo.shape == (2 * SR,)
    assert isinstance(ctc_pipe(demo)["text"], str)
    path = tmp_path / "a.wav"
    sf.write(path, demo, SR)
    assert ctc_pipe.cli_inputs([str(path)]) == str(path)
    assert ctc_pipe.cli_inputs([str(path), str(path)]) == [str(path), str(path)]


# ------------------------------------------------------------------------------------------ audio classification
@pytest.fixture(scope="module")
def ks(tiny):
    return tiny.get("wav2vec2-keyword-spotting")


@pytest.fixture(scope="module")
def ks_pipe(ks):
    return edgetf.pipeline("audio-classification", ks.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ks_ref(ks, reference):
    return reference("audio-classification", ks)


def _same_ranking(got, expected, tol: float = 1e-5) -> None:
    assert [d["label"] for d in got] == [d["label"] for d in expected]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, expected)) <= tol
    assert all(list(d) == ["score", "label"] for d in got)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"top_k": None},
        {"top_k": 2},
        {"top_k": 100},
        {"function_to_apply": "sigmoid"},
        {"function_to_apply": "none", "top_k": 3},
    ],
)
def test_classification_matches_reference(ks_pipe, ks_ref, options) -> None:
    for name, audio in _signals().items():
        expected = ks_ref(audio.copy(), **options)
        got = ks_pipe(audio, **options)
        assert len(got) == len(expected), name
        _same_ranking(got, expected)
    if options.get("function_to_apply", "softmax") == "softmax" and options.get("top_k", None) is None:
        assert abs(sum(d["score"] for d in got) - 1.0) < 1e-5


def test_classification_inputs(ks_pipe, ks_ref, tmp_path) -> None:
    signals = _signals()
    batch = ks_pipe([signals["tone"], signals["noise"]], top_k=3)
    for got, expected in zip(batch, ks_ref([signals["tone"].copy(), signals["noise"].copy()], top_k=3)):
        _same_ranking(got, expected)
    rate = 44100
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([speech_like(1.5, rate, 1), speech_like(1.5, rate, 2)], axis=1), rate)
    decoded = load_audio(str(path), SR).samples
    _same_ranking(ks_pipe(str(path)), ks_ref(decoded.copy()))
    as_dict = {"array": decoded, "sampling_rate": SR}
    _same_ranking(ks_pipe(as_dict), ks_ref(dict(as_dict)))
    built = edgetf.pipeline("audio-classification", ks_pipe.bundle.root, dtype="fp32", top_k=2)
    assert len(built(signals["tone"])) == 2  # a construction-time top_k is honoured (transformers ignores it)


def test_classification_q8_agreement(ks, ks_ref, capsys) -> None:
    q8 = edgetf.pipeline("audio-classification", ks.bundle, dtype="q8")
    signals = _signals()
    agree = sum(q8(a)[0]["label"] == ks_ref(a.copy())[0]["label"] for a in signals.values())
    diff = max(
        abs(a["score"] - b["score"])
        for s in signals.values()
        for a, b in zip(sorted(q8(s), key=lambda d: d["label"]), sorted(ks_ref(s.copy()), key=lambda d: d["label"]))
    )
    with capsys.disabled():
        print(f"\n[wav2vec2-keyword-spotting q8] top-1 agreement {agree}/{len(signals)}, max score diff {diff:.4f}")
    assert agree / len(signals) >= 0.8


@pytest.mark.parametrize(
    "bad,options,match",
    [
        (np.zeros(0, np.float32), {}, "no samples"),
        (np.array([np.inf, 0.0], np.float32), {}, "NaN or infinite"),
        (np.zeros((2, 2, 2), np.float32), {}, "3-D"),
        ({"raw": np.zeros(100, np.float32), "sampling_rate": -1}, {}, "sampling_rate"),
        (np.zeros(SR, np.float32), {"top_k": 0}, "top_k"),
        (np.zeros(SR, np.float32), {"function_to_apply": "tanh"}, "function_to_apply"),
        ([], {}, "empty list"),
    ],
)
def test_classification_bad_input(ks_pipe, bad, options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ks_pipe(bad, **options)


def test_task_from_bundle_config(ks, ctc) -> None:
    assert type(edgetf.pipeline(None, ks.bundle)).__name__ == "AudioClassificationPipeline"
    assert type(edgetf.pipeline(None, ctc.bundle)).__name__ == "CTCSpeechRecognitionPipeline"
    assert edgetf.pipeline(None, ks.bundle).dtype == "q8"  # the verified quantized file is the default


def test_conv_as_matmul_rewrite_is_exact(ctc, tmp_path) -> None:
    # opt-in q8 recipe (quantize.conv_as_matmul): feature-encoder convs as per-tap MatMuls, which
    # dynamic quantization turns into int8 GEMMs instead of onnxruntime's slow ConvInteger
    from edgetf.session import Session
    from export.quantize import convs_to_matmuls

    src = ctc.bundle / "onnx" / "model.onnx"
    dst = tmp_path / "rewritten.onnx"
    assert convs_to_matmuls(src, dst, min_channels=16) == 3  # the tiny model's 32-channel convs
    assert convs_to_matmuls(src, tmp_path / "none.onnx", min_channels=64) == 0
    for n in (SR, SR + 13, 3000):
        x = speech_like(n / SR, SR, 4).astype(np.float32)[None]
        a = Session(src).run({"input_values": x})["logits"]
        b = Session(dst).run({"input_values": x})["logits"]
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, float(np.abs(a).max()))


def _attention_gib(config: dict, samples: int) -> float:
    frames = samples // int(np.prod(config["conv_stride"]))
    return config["num_attention_heads"] * frames * frames * 4 / 1024**3


def test_audio_too_long_for_one_pass_is_refused_with_the_chunking_hint(ctc_pipe, ks_pipe) -> None:
    """Hours of audio in one pass would exhaust memory in attention: a clear error instead of an OOM kill."""
    rng = np.random.default_rng(0)
    seconds = 40 * 60
    audio = {"array": rng.normal(0, 0.1, seconds * 16000).astype(np.float32), "sampling_rate": 16000}
    assert _attention_gib(ctc_pipe.bundle.config, seconds * 16000) > 4  # the limit this test relies on
    with pytest.raises(InvalidInputError, match="2400 s long.*GiB for attention.*chunk_length_s=30"):
        ctc_pipe(audio)
    with pytest.raises(InvalidInputError, match="2400 s long.*GiB for attention"):
        ks_pipe(audio)
    # a few minutes stay within the limit and run in one pass, as in transformers
    short = {"array": audio["array"][: 60 * 16000], "sampling_rate": 16000}
    assert _attention_gib(ctc_pipe.bundle.config, 60 * 16000) < 4
    assert isinstance(ctc_pipe(short)["text"], str)
