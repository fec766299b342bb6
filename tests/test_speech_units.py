"""Pure pre/post-processing pieces of the speech pipelines vs their transformers counterparts, on
hand-made and random token streams (no ONNX sessions): CTC decoding and offsets, Whisper's timestamp
rules, chunk merging and the ``_decode_asr`` state machine, chunk boundaries and stride rescaling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgetf
from edgetf.audio.chunks import chunk_sizes, iter_chunks, rescale_stride
from edgetf.bundle import Bundle
from edgetf.text.ctc import CTCVocab
from edgetf.text.tokenizer import TextTokenizer
from edgetf.whisper.seek import TimestampRules, split_segments
from edgetf.whisper.segments import ChunkOutput, decode_asr, longest_common_sequence
from edgetf.whisper.tokens import WhisperTokens

SR = 16000


@pytest.fixture(scope="module")
def ctc(tiny):
    return tiny.get("wav2vec2-ctc")


@pytest.fixture(scope="module")
def whisper(tiny):
    return tiny.get("whisper-tiny")


# ------------------------------------------------------------------------------------------ CTC
def test_ctc_decoding_matches_tokenizer(ctc) -> None:
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(ctc.checkpoint)
    vocab = CTCVocab.from_bundle(Bundle.open(ctc.bundle))
    rng = np.random.default_rng(0)
    streams = [[], [0, 0, 0], [4, 4, 5, 0, 5, 4], [7, 7, 0, 7, 4, 4, 9, 1, 2, 3, 40]]
    streams += [list(rng.choice(12, size=rng.integers(1, 60), p=None)) for _ in range(40)]  # blanks, | and specials
    for ids in streams:
        assert vocab.decode(ids) == ref.decode(ids), ids
        offsets = ref.decode(ids, output_char_offsets=True, output_word_offsets=True)
        chars = vocab.char_offsets(ids)
        assert [(c.char, c.start_offset, c.end_offset) for c in chars] == [
            (o["char"], o["start_offset"], o["end_offset"]) for o in offsets["char_offsets"]
        ]
        words = vocab.word_offsets(chars)
        assert [(w.word, w.start_offset, w.end_offset) for w in words] == [
            (o["word"], o["start_offset"], o["end_offset"]) for o in offsets["word_offsets"]
        ]


def test_ctc_vocabulary_from_tokenizer_json(ctc, tmp_path) -> None:
    # transformers.js folders carry the CTC vocabulary in tokenizer.json rather than vocab.json
    folder = tmp_path / "bundle"
    shutil.copytree(ctc.bundle, folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    (folder / "vocab.json").unlink()
    (folder / "edgetf.json").unlink()
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": vocab}}))
    audio = (0.3 * np.sin(2 * np.pi * 300 * np.arange(SR) / SR)).astype(np.float32)
    with_vocab = edgetf.pipeline("automatic-speech-recognition", ctc.bundle, dtype="fp32")
    without = edgetf.pipeline(None, folder, dtype="fp32")
    assert without(audio) == with_vocab(audio)


# ------------------------------------------------------------------------------------------ chunks
@pytest.mark.parametrize("n", [1, 100, 16000, 16001, 70 * 16000, 70 * 16000 + 7])
@pytest.mark.parametrize("length,stride,align", [(10, None, 320), (10, (2, 1), 320), (30, 5, 1), (12, [2, 3], 1)])
def test_chunks_match_reference(n, length, stride, align) -> None:
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    class _FE:  # chunk_iter calls the feature extractor on each chunk: an identity stand-in
        sampling_rate = SR

        def __call__(self, chunk, **_kw):
            return {"chunk": chunk}

    audio = np.arange(n, dtype=np.float32)
    sizes = chunk_sizes(length, stride, SR, align)
    expected = list(chunk_iter(audio, _FE(), *sizes))
    got = list(iter_chunks(audio, *sizes))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.stride == e["stride"] and g.is_last == e["is_last"]
        np.testing.assert_array_equal(g.samples, e["chunk"])


def test_rescale_stride_matches_reference() -> None:
    from transformers.pipelines.automatic_speech_recognition import rescale_stride as ref

    for stride in [(160000, 16000, 16000), (48013, 0, 3200), (1, 0, 0), (3200, 1600, 0)]:
        assert rescale_stride(stride, 1 / 320) == tuple(ref([stride], 1 / 320)[0])


# ------------------------------------------------------------------------------------------ Whisper text
def test_longest_common_sequence_matches_reference() -> None:
    from transformers.models.whisper.tokenization_whisper import _find_longest_common_sequence

    rng = np.random.default_rng(1)
    for _ in range(200):
        base = list(rng.integers(0, 6, size=rng.integers(0, 30)))
        pieces, start = [], 0
        while start < len(base) or not pieces:
            stop = start + int(rng.integers(1, 12))
            piece = base[max(0, start - int(rng.integers(0, 4))) : stop]
            if rng.random() < 0.3 and piece:  # a disagreement in the overlap
                piece[int(rng.integers(len(piece)))] = int(rng.integers(0, 6))
            pieces.append(piece)
            start = stop
        assert longest_common_sequence(pieces) == list(_find_longest_common_sequence(pieces)), pieces


def _random_stream(rng, text: WhisperTokens, vocab_text: int, special: list[int]) -> list[int]:
    tb = text.timestamp_begin
    ids: list[int] = []
    time = int(rng.integers(0, 40))
    for _ in range(int(rng.integers(0, 25))):
        roll = rng.random()
        if roll < 0.25:  # a timestamp, sometimes a pair, sometimes going back (a new window)
            if rng.random() < 0.15:
                time = int(rng.integers(0, 20))
            time = min(1500, time + int(rng.integers(0, 60)))
            ids.append(tb + time)
            if rng.random() < 0.5:
                ids.append(tb + time)
        elif roll < 0.32:
            ids.append(int(rng.choice(special)))
        else:
            ids.append(int(rng.integers(0, vocab_text)))
    return ids


@pytest.mark.parametrize("return_timestamps", [False, True])
def test_decode_asr_matches_reference(whisper, return_timestamps) -> None:
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(whisper.checkpoint)
    text = WhisperTokens(TextTokenizer.from_bundle(Bundle.open(whisper.bundle)))
    special = [text.tokenizer.token_to_id(t) for t in ("<|en|>", "<|fr|>", "<|transcribe|>", "<|endoftext|>")]
    vocab_text = text.tokenizer.token_to_id("<|endoftext|>")
    rng = np.random.default_rng(2)
    for case in range(150):
        n_chunks = int(rng.integers(1, 4))
        outputs, ref_outputs = [], []
        for i in range(n_chunks):
            ids = _random_stream(rng, text, vocab_text, special)
            stride = None
            if n_chunks > 1:
                stride = (30.0 if i < n_chunks - 1 else 12.5, 0.0 if i == 0 else 5.0, 0.0 if i == n_chunks - 1 else 5.0)
            outputs.append(ChunkOutput(ids, stride))
            item = {"tokens": np.array([ids], dtype=np.int64).reshape(1, -1)}
            if stride is not None:
                item["stride"] = stride
            ref_outputs.append(item)
        language = bool(case % 3 == 0)
        expected = ref._decode_asr(
            ref_outputs, return_timestamps=return_timestamps, return_language=language, time_precision=0.02
        )
        got = decode_asr(
            text, outputs, return_timestamps=return_timestamps, return_language=language, time_precision=0.02
        )
        assert got == expected, [o.tokens for o in outputs]


def test_timestamp_rules_match_reference(whisper) -> None:
    import torch
    from transformers import GenerationConfig
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    gen = GenerationConfig.from_pretrained(whisper.checkpoint)
    tb = gen.no_timestamps_token_id + 1
    vocab = tb + 1501
    rng = np.random.default_rng(3)
    for begin in (1, 3, 4):
        for max_initial in (None, 0, 50):
            gen.max_initial_timestamp_index = max_initial
            ref = WhisperTimeStampLogitsProcessor(gen, begin_index=begin)
            ours = TimestampRules(gen.no_timestamps_token_id, gen.eos_token_id, begin, max_initial)
            for length in range(begin, begin + 6):
                ids = rng.integers(0, vocab, size=(4, length))
                ids[:, begin:] = np.where(
                    rng.random((4, length - begin)) < 0.5, rng.integers(tb, vocab), ids[:, begin:]
                )
                scores = rng.normal(0, 3, size=(4, vocab)).astype(np.float32)
                scores[1, tb:] += 8  # make the timestamp-mass rule fire on one row
                expected = ref(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
                got = ours(ids, scores)
                np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
                finite = ~np.isneginf(expected)
                np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6)


def test_split_segments() -> None:
    tb = 100
    # two closed segments: cut after each timestamp pair, the last pair kept with its segment
    seq = np.array([tb, 5, 6, tb + 10, tb + 10, 7, tb + 20, tb + 20])
    segments, advance = split_segments(seq, tb, 3000, 2)
    assert [s.tolist() for s in segments] == [[tb, 5, 6, tb + 10], [tb + 10, 7, tb + 20, tb + 20]]
    assert advance == 20 * 2  # the next window starts at the last timestamp
    # a single timestamp at the end: no speech after it, the whole window is consumed
    seq = np.array([tb, 5, tb + 10, tb + 10, 6, tb + 30])
    segments, advance = split_segments(seq, tb, 2500, 2)
    assert [s.tolist() for s in segments] == [[tb, 5, tb + 10], [tb + 10, 6, tb + 30]] and advance == 2500
    # no timestamp pair: one segment, the whole window
    segments, advance = split_segments(np.array([5, 6, 7]), tb, 3000, 2)
    assert [s.tolist() for s in segments] == [[5, 6, 7]] and advance == 3000
    segments, advance = split_segments(np.zeros(0, np.int64), tb, 3000, 2)
    assert advance == 3000 and len(segments) == 1
