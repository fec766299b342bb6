"""token-classification parity with transformers' pipeline: BERT (WordPiece) and RoBERTa (byte-level BPE)."""

import pickle
import warnings

import numpy as np
import pytest
from helpers import assert_random_gate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.text import entities as ents
from export.catalog import long_text
from export.tasks.encoder import compare

MODELS = ["bert-ner", "roberta-ner"]
TEXTS = [
    "My name is Sarah and I live in London, where I work for the BBC.",
    "Café, naïve, résumé, façade, Straße, Łódź, São Paulo.",
    "東京は日本の首都です。我喜欢学习中文。",
    "Emoji are everywhere 😀🎉👍🏽 and people ❤️ them 🚀.",
    "Punctuation runs!!! ??? ... --- *** ###",
    "Tabs\tand    multiple   spaces,\n\nand newlines.",
    "",
    long_text(3000),
]


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    ref = reference("token-classification", built)
    return ref, edgetf.pipeline("token-classification", built.bundle, dtype="fp32"), built


def quiet(call, *args, **kwargs):
    """Run a pipeline with the 'fallback heuristic' UserWarning (byte-level BPE) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def assert_same(expected, got, tol=1e-4):
    diff, problem = compare(expected, got)
    assert problem is None, problem
    assert diff <= tol


def test_manifest_records_parity(pair):
    _, _, built = pair
    fp32, q8 = built.manifest["dtypes"]["fp32"]["parity"], built.manifest["dtypes"]["q8"]["parity"]
    assert fp32["passed"] and fp32["mismatches"] == 0 and fp32["max_diff"] <= 1e-4 and fp32["agreement"] == 1.0
    assert_random_gate(q8, min_inputs=100)
    assert 0.0 <= q8["input_agreement"] <= 1.0


@pytest.mark.parametrize("strategy", [None, "none", "simple", "first", "average", "max"])
def test_varied_inputs_match_reference(pair, strategy):
    ref, pipe, _ = pair
    kwargs = {} if strategy is None else {"aggregation_strategy": strategy}
    for text in TEXTS:
        assert_same(quiet(ref, text, **kwargs), quiet(pipe, text, **kwargs))
    batch = quiet(pipe, TEXTS[:3], ignore_labels=[], **kwargs)
    assert_same(quiet(ref, TEXTS[:3], ignore_labels=[], **kwargs), batch)
    assert len(batch) == 3 and all(isinstance(item, list) for item in batch)


def test_outputs_are_plain_python_and_offsets_index_the_text(pair):
    _, pipe, _ = pair
    text = TEXTS[1]
    for entity in pipe(text, ignore_labels=[]):
        assert list(entity) == ["entity", "score", "index", "word", "start", "end"]
        assert type(entity["score"]) is float and 0.0 < entity["score"] <= 1.0
        assert 0 <= entity["start"] <= entity["end"] <= len(text)  # byte pieces of one char may span nothing
    for group in quiet(pipe, text, aggregation_strategy="first", ignore_labels=[]):
        assert list(group) == ["entity_group", "score", "word", "start", "end"]


@pytest.mark.parametrize(
    "strategy,stride", [("simple", 0), ("simple", 16), ("first", 40), ("average", 8), ("max", 64), (None, 16)]
)
def test_stride_windows_match_reference(pair, strategy, stride):
    ref, pipe, _ = pair
    kwargs = {"stride": stride} if strategy is None else {"aggregation_strategy": strategy, "stride": stride}
    text = long_text(1500)
    expected, got = quiet(ref, text, **kwargs), quiet(pipe, text, **kwargs)
    assert_same(expected, got)
    assert got[-1]["end"] > 1000  # the windows reach past the first model window (~400 characters)


def test_options_match_reference(pair):
    ref, pipe, _ = pair
    text = TEXTS[0]
    for kwargs in (
        {"ignore_labels": []},
        {"ignore_labels": ["O", "B-PER", "I-LOC"], "aggregation_strategy": "simple"},
        {"aggregation_strategy": "FIRST"},
        {"grouped_entities": True},
        {"grouped_entities": True, "ignore_subwords": True},
    ):
        assert_same(quiet(ref, text, **kwargs), quiet(pipe, text, **kwargs))


def test_construction_time_options(pair):
    ref, _, built = pair
    pipe = edgetf.pipeline("token-classification", built.bundle, dtype="fp32", aggregation_strategy="max")
    assert_same(quiet(ref, TEXTS[0], aggregation_strategy="max"), quiet(pipe, TEXTS[0]))


def test_pre_tokenized_words(pair):
    ref, pipe, built = pair
    words = ["Sarah", "lives", "in", "Łódź", "東京", "😀"]
    batch = [["New", "York"], ["x", "Café", "naïve"]]
    if "add_prefix_space" in (pipe.tokenizer.config or {}) and not pipe.tokenizer.config["add_prefix_space"]:
        with pytest.raises(InvalidInputError, match="add_prefix_space"):
            pipe(words, is_split_into_words=True)
        with pytest.raises(AssertionError):  # transformers refuses too
            ref(words, is_split_into_words=True)
        return
    for strategy in ("none", "simple", "first"):
        kwargs = {"is_split_into_words": True, "aggregation_strategy": strategy, "ignore_labels": []}
        assert_same(ref(words, **kwargs), pipe(words, **kwargs))
        assert_same(ref(batch, **kwargs), pipe(batch, **kwargs))
    kwargs = {"is_split_into_words": True, "delimiter": "--", "ignore_labels": []}
    assert_same(ref(words, **kwargs), pipe(words, **kwargs))


@pytest.mark.parametrize("bad", [[], None, 5, [5], ("a", 3), {"text": "a"}])
def test_bad_inputs_raise_invalid_input(pair, bad):
    ref, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(bad)
    with pytest.raises((ValueError, TypeError)):  # the reference refuses them too
        ref(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aggregation_strategy": "none", "stride": 8},
        {"aggregation_strategy": "simple", "stride": 128},
        {"aggregation_strategy": "simple", "stride": 127},
        {"aggregation_strategy": "simple", "stride": 126},
    ],
)
def test_bad_stride_raises_like_reference(pair, kwargs):
    ref, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(TEXTS[-1], **kwargs)
    if kwargs["stride"] != 126:  # tokenizers panics there (not an Exception): edgetf checks first
        with pytest.raises(ValueError):
            ref(TEXTS[-1], **kwargs)


def test_bad_options_raise_invalid_input(pair):
    _, pipe, _ = pair
    for kwargs in ({"aggregation_strategy": "bogus"}, {"ignore_labels": "O"}, {"stride": -1}, {"top_k": 3}):
        with pytest.raises(InvalidInputError):
            pipe("text", **kwargs)


def test_demo_and_pickle(pair):
    _, pipe, _ = pair
    sample = pipe.demo_input()
    again = pickle.loads(pickle.dumps(pipe))
    assert_same(pipe(sample, ignore_labels=[]), again(sample, ignore_labels=[]), tol=0.0)


# -- the pure post-processing functions, on hand-made arrays, against the reference's methods --------
def _entities(rng, id2label, n):
    labels = list(id2label.values())
    out, start = [], 0
    for i in range(n):
        width = int(rng.integers(1, 4))
        out.append(
            {
                "entity": labels[int(rng.integers(len(labels)))],
                "score": np.float32(rng.random()),
                "index": i + 1,
                "word": f"w{i}",
                "start": start,
                "end": start + width,
            }
        )
        start += width + int(rng.integers(0, 2))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_group_entities_matches_reference(pair, seed):
    ref, pipe, _ = pair
    rng = np.random.default_rng(seed)
    id2label = dict(ref.model.config.id2label) | {len(ref.model.config.id2label): "DATE"}  # an unprefixed label
    entities = _entities(rng, id2label, 30)
    got = ents.group_entities(entities, pipe.tokenizer.convert_tokens_to_string)
    assert_same(ref.group_entities(entities), ents.to_python(got))


@pytest.mark.parametrize("seed", range(5))
def test_merge_overlapping_matches_reference(pair, seed):
    ref, _, _ = pair
    rng = np.random.default_rng(seed)
    entities = _entities(rng, ref.model.config.id2label, 12)
    shifted = [dict(e, start=e["start"] + 2, end=e["end"] + int(rng.integers(1, 4))) for e in entities[::2]]
    mixed = entities + shifted
    assert_same(ref.aggregate_overlapping_entities(list(mixed)), ents.to_python(ents.merge_overlapping(list(mixed))))


@pytest.mark.parametrize("strategy", ents.WORD_STRATEGIES)
def test_word_aggregation_matches_reference(pair, strategy):
    from transformers.pipelines.token_classification import AggregationStrategy

    ref, pipe, _ = pair
    rng = np.random.default_rng(1)
    id2label = ref.model.config.id2label
    text = TEXTS[0]
    enc = pipe.tokenizer.encode(text)
    logits = rng.normal(size=(len(enc.ids), len(id2label))).astype(np.float32)
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    enum = AggregationStrategy(strategy)
    expected_records = quiet(
        ref.gather_pre_entities,
        text,
        np.array(enc.ids),
        scores,
        enc.offsets,
        np.array(enc.special_tokens_mask),
        enum,
    )
    records = ents.gather_tokens(
        text,
        [pipe.tokenizer.id_to_token(i) for i in enc.ids],
        enc.ids,
        scores,
        enc.offsets,
        enc.special_tokens_mask,
        unk_token_id=pipe.tokenizer.token_id("unk_token"),
        word_aware=pipe.tokenizer.continuing_subword_prefix is not None,
    )
    assert [{k: v for k, v in r.items() if k != "scores"} for r in records] == [
        {k: v for k, v in r.items() if k != "scores"} for r in expected_records
    ]
    join = pipe.tokenizer.convert_tokens_to_string
    assert_same(
        ref.aggregate(expected_records, enum), ents.to_python(ents.aggregate(records, strategy, id2label, join))
    )


# -- arbitrary text: same output as the reference, whatever the characters ---------------------------
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.text(max_size=200), strategy=st.sampled_from(ents.STRATEGIES))
def test_any_text_matches_reference(pair, text, strategy):
    ref, pipe, _ = pair
    kwargs = {"aggregation_strategy": strategy, "ignore_labels": []}
    assert_same(quiet(ref, text, **kwargs), quiet(pipe, text, **kwargs))


def test_batch_size_gives_the_same_entities(pair):
    _, pipe, _ = pair
    texts = [*TEXTS[:4], "", long_text(1200)]
    for kwargs in ({"ignore_labels": []}, {"aggregation_strategy": "first", "stride": 20}):
        one_by_one = quiet(pipe, texts, **kwargs)
        assert_same(one_by_one, quiet(pipe, texts, batch_size=4, **kwargs), tol=1e-5)
    with pytest.raises(InvalidInputError):
        pipe("text", batch_size=0)
