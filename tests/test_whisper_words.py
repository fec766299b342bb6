"""Whisper word timestamps (``return_timestamps="word"``) vs transformers' pipeline on the tiny bundle.

The reference runs ``generate(return_token_timestamps=True)`` with eager attention; edgetf aligns with one
teacher-forced pass of the merged decoder's ``cross_attentions.{layer}`` outputs per window. Text and words
must be equal; times may differ by one DTW step (0.02 s) where float rounding breaks a near-tie (none
seen on these inputs: the max difference is printed).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import edgetf
from edgetf.audio.samples import parity_signals, speech_like
from edgetf.errors import BundleError, InvalidInputError
from edgetf.whisper.alignment import (
    AlignmentSettings,
    check_attention_outputs,
    combine_tokens_into_words,
    dynamic_time_warping,
    median_filter,
)

SR = 16000
ASR = "automatic-speech-recognition"
STEP = 0.02 + 1e-9
DIFFS: list[float] = []

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def multi(tiny):
    return tiny.get("whisper-tiny")


@pytest.fixture(scope="module")
def pipe(multi):
    return edgetf.pipeline(ASR, multi.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ref(multi, reference):
    return reference(ASR, multi, model_kwargs={"attn_implementation": "eager"})


def _words_match(pipe, ref, audio, monotonic=True, **options):
    expected = ref(audio.copy(), return_timestamps="word", **options)
    got = pipe(audio, return_timestamps="word", **options)
    assert got["text"] == expected["text"], options
    assert [w["text"] for w in got["chunks"]] == [w["text"] for w in expected["chunks"]], options
    assert [set(w) for w in got["chunks"]] == [set(w) for w in expected["chunks"]]
    diff = 0.0
    for g, e in zip(got["chunks"], expected["chunks"]):
        for a, b in zip(g["timestamp"], e["timestamp"]):
            diff = max(diff, abs(a - b))
    assert diff <= STEP, (options, got["chunks"], expected["chunks"])
    DIFFS.append(diff)
    if monotonic:  # one seek loop: DTW paths are monotonic and windows follow each other
        stamps = [t for w in got["chunks"] for t in w["timestamp"]]
        assert stamps == sorted(stamps), got["chunks"]
    return got


@pytest.mark.parametrize("signal", ["speechlike", "noise", "tone"])
@pytest.mark.parametrize("beams", [1, 5])
def test_short_form_words_match_reference(pipe, ref, signal, beams) -> None:
    got = _words_match(pipe, ref, parity_signals()[signal], num_beams=beams)
    assert got["chunks"]


def test_words_with_language_match_reference(pipe, ref) -> None:
    got = _words_match(pipe, ref, parity_signals()["speechlike"], language="de", return_language=True)
    assert got["chunks"] and all("language" in w for w in got["chunks"])  # None as transformers (prompt stripped)


def test_chunked_words_match_reference(pipe, ref) -> None:
    clip = speech_like(70.0, SR, 7).astype(np.float32)
    # merged overlapping chunks mix the chunks' token times: transformers' word times can go backwards there
    got = _words_match(pipe, ref, clip, False, chunk_length_s=30, max_new_tokens=20)
    assert got["chunks"][-1]["timestamp"][0] > 30.0  # times continue across chunks
    _words_match(pipe, ref, clip[: 35 * SR], False, chunk_length_s=12, stride_length_s=[2, 3], max_new_tokens=10)


def test_long_form_words_match_reference(pipe, ref) -> None:
    got = _words_match(pipe, ref, speech_like(40.0, SR, 8).astype(np.float32))
    assert got["chunks"][-1]["timestamp"][1] > 30.0


def test_report_max_difference(capsys) -> None:
    with capsys.disabled():
        print(f"\n[whisper-tiny words] {len(DIFFS)} calls, max |time - transformers| = {max(DIFFS, default=0):.3f} s")


def test_q8_bundle_gives_words(multi) -> None:
    q8 = edgetf.pipeline(ASR, multi.bundle, dtype="q8")
    assert "cross_attentions.1" in q8.model().decoder.output_names
    got = q8(parity_signals()["speechlike"], return_timestamps="word", num_beams=1)
    assert "".join(w["text"] for w in got["chunks"]) == got["text"]


def test_bundle_without_attention_outputs(multi, tmp_path) -> None:
    import onnx

    folder = tmp_path / "old"
    shutil.copytree(multi.bundle, folder)
    (folder / "edgetf.json").unlink()  # as a bundle from before (no manifest checksums to keep)
    path = folder / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(str(path), load_external_data=False)
    keep = [o for o in model.graph.output if not o.name.startswith("cross_attentions.")]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(path))
    old = edgetf.pipeline(ASR, folder, dtype="fp32")
    audio = parity_signals()["tone"]
    assert old(audio, num_beams=1)["text"]  # everything else still works
    with pytest.raises(BundleError, match="re-export"):
        old(audio, return_timestamps="word")


def test_bad_alignment_settings() -> None:
    with pytest.raises(InvalidInputError, match="alignment_heads"):
        AlignmentSettings.from_configs({}, {})
    with pytest.raises(BundleError, match="odd"):
        AlignmentSettings.from_configs({"alignment_heads": [[0, 0]]}, {"median_filter_width": 4})
    settings = AlignmentSettings.from_configs({"alignment_heads": [[1, 0], [0, 2]]}, {})
    assert settings.layers == [0, 1] and settings.median_filter_width == 7
    with pytest.raises(BundleError, match=r"cross_attentions\.1"):
        check_attention_outputs(["logits", "cross_attentions.0"], settings, "decoder_model_merged.onnx")


# ------------------------------------------------------------------------------------------ pure functions
def test_dtw_and_median_filter_match_transformers() -> None:
    import torch
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

    rng = np.random.default_rng(0)
    matrices = [rng.standard_normal((n, m)) for n, m in ((1, 5), (7, 40), (12, 9), (30, 150))]
    matrices += [rng.integers(0, 3, (10, 25)).astype(np.float64), np.zeros((4, 6)), np.zeros((3, 0))]
    for matrix in matrices:
        text, time = dynamic_time_warping(matrix)
        ref_text, ref_time = _dynamic_time_warping(matrix)
        assert np.array_equal(text, ref_text) and np.array_equal(time, ref_time), matrix.shape
        assert np.all(np.diff(text) >= 0) and np.all(np.diff(time) >= 0)  # monotonic path
    x = rng.standard_normal((2, 3, 5, 40)).astype(np.float32)
    for width in (1, 3, 7):
        assert np.array_equal(median_filter(x, width), _median_filter(torch.from_numpy(x), width).numpy())
    short = x[..., :2]
    assert np.array_equal(median_filter(short, 7), short)


def test_word_grouping_matches_transformers(multi) -> None:
    import transformers
    from transformers.models.whisper.tokenization_whisper import _combine_tokens_into_words

    tok = transformers.AutoTokenizer.from_pretrained(str(multi.checkpoint))
    pipe = edgetf.pipeline(ASR, multi.bundle, dtype="fp32")
    texts = [" Hello, world! (it's) a test.", ' He said "yes" - fine?', "no space at start", " 日本語のテスト"]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for language in ("english", "japanese"):
            words, _, indices = _combine_tokens_into_words(tok, ids, language)
            eot = pipe.tokens.eot
            assert combine_tokens_into_words(pipe.tokens.decode, ids, language, eot) == (words, indices)
