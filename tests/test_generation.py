"""Unit tests of edgetf.generation: logits processors against transformers' own, config resolution and
validation, the search loops on a hand-made step model, and incremental detokenization."""

from __future__ import annotations

import numpy as np
import pytest

from edgetf.errors import InvalidInputError
from edgetf.generation import GenerationConfig, generate, logits, stream_text
from edgetf.generation.config import call_generation_config, pipeline_generation_config
from edgetf.generation.search import prepare_lengths
from edgetf.generation.streaming import REPLACEMENT, IncrementalDecoder

torch = pytest.importorskip("torch")
hf = pytest.importorskip("transformers.generation.logits_process")

VOCAB = 40


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(3, 9))
    ids[1, -3:] = ids[1, 2:5]  # a repeated trigram prefix for the n-gram processor
    scores = rng.normal(0, 3, size=(3, VOCAB)).astype(np.float32)
    return ids, scores


def _ref(processor, ids, scores):
    return processor(torch.tensor(ids), torch.tensor(scores)).numpy()


CASES = [
    (lambda: logits.RepetitionPenalty(1.3), lambda: hf.RepetitionPenaltyLogitsProcessor(1.3)),
    (lambda: logits.RepetitionPenalty(0.7), lambda: hf.RepetitionPenaltyLogitsProcessor(0.7)),
    (lambda: logits.NoRepeatNGram(2), lambda: hf.NoRepeatNGramLogitsProcessor(2)),
    (lambda: logits.NoRepeatNGram(3), lambda: hf.NoRepeatNGramLogitsProcessor(3)),
    (lambda: logits.NoRepeatNGram(1), lambda: hf.NoRepeatNGramLogitsProcessor(1)),
    (lambda: logits.MinLength(12, [3, 5]), lambda: hf.MinLengthLogitsProcessor(12, [3, 5])),
    (lambda: logits.MinLength(5, [3]), lambda: hf.MinLengthLogitsProcessor(5, [3])),
    (lambda: logits.MinNewTokens(4, 8, [2]), lambda: hf.MinNewTokensLengthLogitsProcessor(4, 8, [2])),
    (lambda: logits.ForcedEOS(10, [1, 2]), lambda: hf.ForcedEOSTokenLogitsProcessor(10, [1, 2])),
    (lambda: logits.NoBadWords([[4], [7, 8], [1]], [1]), lambda: hf.NoBadWordsLogitsProcessor([[4], [7, 8], [1]], [1])),
    (lambda: logits.SuppressTokens([0, 3, 9]), lambda: hf.SuppressTokensLogitsProcessor([0, 3, 9])),
    (lambda: logits.SuppressTokensAtBegin([2, 5], 9), lambda: hf.SuppressTokensAtBeginLogitsProcessor([2, 5], 9)),
    (lambda: logits.Temperature(0.7), lambda: hf.TemperatureLogitsWarper(0.7)),
    (lambda: logits.TopK(5), lambda: hf.TopKLogitsWarper(5)),
    (lambda: logits.TopK(3, 4), lambda: hf.TopKLogitsWarper(3, min_tokens_to_keep=4)),
    (lambda: logits.TopP(0.8), lambda: hf.TopPLogitsWarper(0.8)),
    (lambda: logits.TopP(0.3, 3), lambda: hf.TopPLogitsWarper(0.3, min_tokens_to_keep=3)),
    (lambda: logits.MinP(0.1), lambda: hf.MinPLogitsWarper(0.1)),
    (lambda: logits.Typical(0.9), lambda: hf.TypicalLogitsWarper(0.9)),
    (lambda: logits.LogitNormalization(), lambda: hf.LogitNormalization()),
]


@pytest.mark.parametrize("mine,theirs", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_processor_matches_transformers(arrays, mine, theirs):
    ids, scores = arrays
    got = mine()(ids, scores)
    want = _ref(theirs(), ids, scores)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-6)
    assert not np.shares_memory(got, scores) or got is scores  # never written in place
    assert np.array_equal(scores, arrays[1])


def test_forced_bos_on_first_step_only(arrays):
    _, scores = arrays
    first = np.zeros((3, 1), dtype=np.int64)
    for ids in (first, np.zeros((3, 4), dtype=np.int64)):
        got = logits.ForcedBOS(7)(ids, scores)
        want = _ref(hf.ForcedBOSTokenLogitsProcessor(7), ids, scores)
        np.testing.assert_array_equal(got, want)


def test_build_processors_order_matches_transformers():
    import transformers

    config = GenerationConfig(
        do_sample=True,
        temperature=0.5,
        top_k=10,
        top_p=0.9,
        repetition_penalty=1.2,
        no_repeat_ngram_size=2,
        min_new_tokens=2,
        eos_token_id=1,
        max_length=30,
    )
    names = [type(p).__name__ for p in logits.build_processors(config, 5)]
    assert names == ["RepetitionPenalty", "NoRepeatNGram", "MinNewTokens", "Temperature", "TopK", "TopP"]
    # transformers' order for the same settings
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=VOCAB))
    ref_cfg = transformers.GenerationConfig(**{k: v for k, v in config.to_dict().items() if v is not None})
    model._prepare_special_tokens(ref_cfg, True, device="cpu")
    ref = [type(p).__name__ for p in model._get_logits_processor(ref_cfg, input_ids_seq_length=5)]
    assert ref == [
        "RepetitionPenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor",
        "MinNewTokensLengthLogitsProcessor",
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
    ]


# -- config resolution -------------------------------------------------------------------------------
def test_pipeline_defaults_apply_when_model_sets_nothing():
    model = GenerationConfig.from_dict({"bos_token_id": 0, "eos_token_id": 2, "transformers_version": "4.57.6"})
    cfg = pipeline_generation_config(model, {"max_new_tokens": 256, "num_beams": 4}, {}, None, 1)
    assert (cfg.num_beams, cfg.max_new_tokens, cfg.pad_token_id, cfg.eos_token_id) == (4, 256, 1, 2)


@pytest.mark.parametrize(
    "model_values",
    [
        {"num_beams": 2, "max_length": 40},
        {"no_repeat_ngram_size": 3, "length_penalty": 2.0, "min_length": 5},
        {"do_sample": True, "top_k": 10, "max_new_tokens": 30},
        {"temperature": 0.0},
    ],
    ids=str,
)
def test_model_generation_config_merges_as_transformers(model_values):
    """Model values fill only fields the pipeline left at the global default (transformers' rule)."""
    import transformers

    tokens = {"bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2, "pad_token_id": 1}
    small = transformers.BartConfig(
        d_model=8,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=1,
        decoder_attention_heads=1,
        encoder_ffn_dim=8,
        decoder_ffn_dim=8,
        vocab_size=20,
    )
    model = transformers.BartForConditionalGeneration(small)
    model.generation_config = transformers.GenerationConfig(**tokens, **model_values)
    defaults = {"max_new_tokens": 256, "num_beams": 4}
    want, _ = model._prepare_generation_config(
        generation_config=transformers.GenerationConfig(**defaults), use_model_defaults=True
    )
    mine = GenerationConfig.from_dict({**tokens, **model_values, "transformers_version": transformers.__version__})
    got = pipeline_generation_config(mine, defaults, {}, None, None)
    if defaults["max_new_tokens"] == want.max_new_tokens and want.max_length != 20:
        want.max_new_tokens = None  # the pipeline's own rule, applied after the merge
    for name in GenerationConfig().to_dict():
        assert getattr(got, name) == getattr(want, name), name


def test_task_params_and_call_options_order():
    model = GenerationConfig.from_dict({"transformers_version": "4.57.6"})
    cfg = pipeline_generation_config(
        model, {"max_new_tokens": 256, "num_beams": 4}, {"num_beams": 3}, {"num_beams": 5, "prefix": "x: "}, None
    )
    assert cfg.num_beams == 5  # task_specific_params come after construction options, as in transformers
    assert call_generation_config(cfg, model, {"num_beams": 2}).num_beams == 2
    with pytest.raises(InvalidInputError, match="unknown generation option"):
        call_generation_config(cfg, model, {"num_beam": 2})


def test_old_generation_config_only_fills_token_ids():
    model = GenerationConfig.from_dict({"num_beams": 6, "eos_token_id": 1, "transformers_version": "4.27.0"})
    cfg = call_generation_config(GenerationConfig(num_beams=4), model, {})
    assert (cfg.num_beams, cfg.eos_token_id) == (4, 1)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": -3}, "max_new_tokens"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"num_return_sequences": 2}, "greedy"),
        ({"do_sample": True, "temperature": 0.0}, "temperature"),
        ({"do_sample": True, "temperature": -1.0}, "temperature"),
        ({"do_sample": True, "top_p": 1.5}, "top_p"),
        ({"do_sample": True, "top_k": -1}, "top_k"),
        ({"num_beams": 0}, "num_beams"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"bad_words_ids": [[]]}, "bad_words_ids"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
    ],
)
def test_invalid_options_raise(options, match):
    with pytest.raises(InvalidInputError, match=match):
        prepare_lengths(GenerationConfig(**options), 3)


def test_lengths_as_transformers():
    assert prepare_lengths(GenerationConfig(max_new_tokens=5), 7).max_length == 12
    assert prepare_lengths(GenerationConfig(), 7).max_length == 27  # default: 20 new tokens
    assert prepare_lengths(GenerationConfig(), 7, max_positions=16).max_length == 16
    assert prepare_lengths(GenerationConfig(max_length=30), 7, max_length_given=True).max_length == 30
    assert prepare_lengths(GenerationConfig(min_new_tokens=3, max_new_tokens=9), 4).min_length == 7
    with pytest.raises(InvalidInputError, match="max_length"):
        prepare_lengths(GenerationConfig(max_length=5), 5, max_length_given=True)
    with pytest.raises(InvalidInputError, match="context window"):
        prepare_lengths(GenerationConfig(max_new_tokens=4), 16, max_positions=16)
    with pytest.warns(UserWarning, match="positions"):
        assert prepare_lengths(GenerationConfig(max_new_tokens=40), 10, max_positions=16).max_length == 16


# -- search loops on a hand-made model -----------------------------------------------------------------
class TableModel:
    """Logits depend only on the last token: a fixed (vocab, vocab) table; the 'cache' is the row order."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.rows: np.ndarray | None = None
        self.calls = 0

    def prefill(self, input_ids, attention_mask):
        self.rows = np.arange(input_ids.shape[0])
        self.calls += 1
        return self.table[input_ids[:, -1]]

    def step(self, input_ids, attention_mask):
        self.calls += 1
        return self.table[input_ids[:, -1]]

    def select(self, rows):
        self.rows = self.rows[rows]


@pytest.fixture(scope="module")
def table():
    return np.random.default_rng(1).normal(0, 2, size=(12, 12)).astype(np.float32)


def test_greedy_follows_argmax_and_pads_after_eos(table):
    eos = int(table[3].argmax())
    cfg = GenerationConfig(max_new_tokens=6, eos_token_id=eos, pad_token_id=11)
    out = generate(TableModel(table), np.array([[3], [5]]), cfg)
    for row in out.sequences:
        tokens = list(row)
        for prev, nxt in zip(tokens, tokens[1:]):
            if prev in (eos, 11):
                assert nxt == 11
            else:
                assert nxt == int(table[prev].argmax())
    assert out.sequences[0, 1] == eos and set(out.sequences[0, 2:]) <= {11}


def test_beam_search_finds_the_best_two_step_path(table):
    cfg = GenerationConfig(max_new_tokens=2, num_beams=12, num_return_sequences=3)
    out = generate(TableModel(table), np.array([[0]]), cfg)
    lp = logits.log_softmax(table)
    totals = lp[0][:, None] + lp  # score of path 0 -> a -> b
    best = np.dstack(np.unravel_index(np.argsort(-totals, axis=None)[:3], totals.shape))[0]
    np.testing.assert_array_equal(out.sequences[:, 1:], best)
    np.testing.assert_allclose(out.sequences_scores, np.sort(totals.ravel())[::-1][:3] / 2.0, rtol=1e-5)


def test_sampling_is_seedable(table):
    cfg = GenerationConfig(max_new_tokens=8, do_sample=True, top_k=0, num_return_sequences=3)
    a = generate(TableModel(table), np.array([[1]]), cfg, seed=7).sequences
    b = generate(TableModel(table), np.array([[1]]), cfg, seed=np.random.default_rng(7)).sequences
    c = generate(TableModel(table), np.array([[1]]), cfg, seed=8).sequences
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sampling_frequencies_follow_the_distribution(table):
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, top_k=0, num_return_sequences=4000)
    out = generate(TableModel(table), np.array([[2]]), cfg, seed=0).sequences[:, 1]
    freq = np.bincount(out, minlength=12) / out.size
    np.testing.assert_allclose(freq, logits.softmax(table[2:3])[0], atol=0.03)


def test_stop_strings_and_several_eos(table):
    letters = "abcdefghijkl"
    cfg = GenerationConfig(max_new_tokens=10, stop_strings="zz", eos_token_id=[98, 99], pad_token_id=0)
    decode = lambda ids: "".join(letters[i] for i in ids)  # noqa: E731
    full = generate(TableModel(table), np.array([[4]]), GenerationConfig(max_new_tokens=10)).sequences[0]
    text = decode(list(full))
    stop = text[4:6]
    cfg.stop_strings = stop
    out = generate(TableModel(table), np.array([[4]]), cfg, decode=decode).sequences[0]
    assert decode(list(out)).endswith(stop) and stop not in decode(list(out))[:-1]


# -- streaming ------------------------------------------------------------------------------------------
def test_incremental_decoder_never_splits_characters(tiny):
    from edgetf.text import TextTokenizer

    tok = TextTokenizer.from_bundle(__import__("edgetf").Bundle.open(tiny.get("gpt2").bundle))
    text = "Café naïve 😀🎉 東京は日本 done."
    ids = tok.encode(text, add_special_tokens=False).ids
    assert len(ids) > len(text) // 3  # byte-level: several multi-byte characters are split across tokens
    pieces = list(stream_text(ids, tok.decode))
    assert "".join(pieces) == tok.decode(ids) == text
    assert all(REPLACEMENT not in p for p in pieces)
    dec = IncrementalDecoder(tok.decode, prefix_ids=ids[:3])
    rest = "".join(dec.push(t) for t in ids[3:]) + dec.flush()
    assert tok.decode(ids[:3]) + rest == text
