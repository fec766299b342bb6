"""text-classification parity with transformers' pipeline: BERT, DistilBERT (WordPiece), RoBERTa (BPE)."""

import numpy as np
import pytest
from helpers import close

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.text_classification import default_function
from export.catalog import long_text

MODELS = ["distilbert-sst2", "bert-sentiment", "roberta-sentiment"]
TEXTS = [
    "I love this movie, it was absolutely wonderful!",
    "This is the worst film I have ever seen.",
    "Café, naïve, résumé, façade, Straße, Łódź, São Paulo.",
    "東京は日本の首都です。我喜欢学习中文。한국어",
    "Emoji are everywhere 😀🎉👍🏽 and people ❤️ them 🚀.",
    "Punctuation runs!!! ??? ... --- *** ###",
    "Tabs\tand    multiple   spaces,\n\nand newlines.",
    "",
    " ",
    "a",
    long_text(5000),
]


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    ref = reference("text-classification", built, truncation=True)
    return ref, edgetf.pipeline("text-classification", built.bundle, dtype="fp32"), built


def test_fp32_scores_match_on_varied_inputs(pair):
    ref, pipe, _ = pair
    worst = 0.0
    for text in TEXTS:
        expected, got = ref(text, top_k=None), pipe(text, top_k=None)
        assert [d["label"] for d in got] == [d["label"] for d in expected], text[:40]
        worst = max(worst, max(abs(e["score"] - g["score"]) for e, g in zip(expected, got)))
    assert worst <= 1e-4


@pytest.mark.parametrize(
    "inputs,kwargs",
    [
        ("a single text", {}),
        (["first text", "second, longer text here"], {}),
        ("a single text", {"top_k": 2}),
        (["one", "two"], {"top_k": None}),
        ("a single text", {"top_k": 1}),
        ("scores", {"function_to_apply": "sigmoid"}),
        ("scores", {"function_to_apply": "none", "top_k": None}),
        ("scores", {"function_to_apply": "SOFTMAX"}),
        ({"text": "the premise", "text_pair": "the hypothesis"}, {}),
        ([{"text": "a", "text_pair": "b"}, {"text": "c"}], {"top_k": 2}),
        ("return all", {"return_all_scores": True}),
    ],
)
def test_output_structure_matches_reference(pair, inputs, kwargs):
    ref, pipe, _ = pair
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref(inputs, **kwargs)
    got = pipe(inputs, **kwargs)
    assert close(expected, got), (expected, got)


def test_construction_time_top_k_quirk(tiny, reference):
    """transformers wraps a single str in a list unless top_k is given at call time; so do we."""
    built = tiny.get("distilbert-sst2")
    ref = reference("text-classification", built, top_k=2)
    pipe = edgetf.pipeline("text-classification", built.bundle, dtype="fp32", top_k=2)
    assert close(ref("hello"), pipe("hello"))
    assert close(ref("hello", top_k=1), pipe("hello", top_k=1))


def test_batching_gives_the_same_scores(pair):
    _, pipe, _ = pair
    one_by_one = [pipe(t, top_k=None) for t in TEXTS]
    batched = pipe(TEXTS, top_k=None, batch_size=4)
    assert close(one_by_one, batched, tol=1e-5)


def test_scores_are_probabilities(pair):
    _, pipe, _ = pair
    for text in TEXTS[:4]:
        scores = [d["score"] for d in pipe(text, top_k=None)]
        assert abs(sum(scores) - 1) < 1e-5 and scores == sorted(scores, reverse=True)


def test_non_trivial_outputs(pair):
    """A parity check on near-uniform outputs proves little: tiny models must spread their scores."""
    _, pipe, _ = pair
    tops = [pipe(t)[0]["score"] for t in TEXTS]
    n_labels = len(pipe(TEXTS[0], top_k=None))
    assert max(tops) > 1.5 / n_labels
    assert len({pipe(t)[0]["label"] for t in TEXTS}) >= 1 and np.std(tops) > 1e-3


def test_q8_agreement(pair, tiny):
    ref, _, built = pair
    q8 = edgetf.pipeline("text-classification", built.bundle, dtype="q8")
    agree, worst = 0, 0.0
    for text in TEXTS:
        expected, got = ref(text, top_k=None), q8(text, top_k=None)
        agree += expected[0]["label"] == got[0]["label"]
        by_label = {d["label"]: d["score"] for d in got}
        worst = max(worst, max(abs(d["score"] - by_label[d["label"]]) for d in expected))
    print(f"{built.name} q8: top-label agreement {agree}/{len(TEXTS)}, worst score error {worst:.4f}")
    assert agree / len(TEXTS) >= 0.8 and worst < 0.2


def test_over_long_input_is_truncated_like_the_reference(pair):
    ref, pipe, _ = pair
    text = long_text(20000)
    assert close(ref(text, top_k=None, truncation=True), pipe(text, top_k=None))
    explicit = pipe(text, top_k=None, max_length=16)
    assert close(ref(text, top_k=None, truncation=True, max_length=16), explicit)


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"problem_type": "regression", "id2label": {"0": "a"}}, "none"),
        ({"problem_type": "multi_label_classification", "id2label": {"0": "a", "1": "b"}}, "sigmoid"),
        ({"id2label": {"0": "a"}}, "sigmoid"),
        ({"id2label": {"0": "a", "1": "b"}}, "softmax"),
    ],
)
def test_default_function_follows_problem_type(config, expected):
    assert default_function(config) == expected


@pytest.mark.parametrize(
    "bad,match",
    [
        (None, "takes a str"),
        (42, "takes a str"),
        ([1, 2], "per input; got int"),
        ({"txt": "x"}, "keys 'text'"),
        ({"text": 3}, "text must be a str"),
        ({"text": "a", "text_pair": b"b"}, "text_pair must be a str"),
    ],
)
def test_bad_inputs_name_what_is_accepted(pair, bad, match):
    _, pipe, _ = pair
    with pytest.raises(InvalidInputError, match=match):
        pipe(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"top_k": 0}, "top_k must be a positive int"),
        ({"function_to_apply": "relu"}, "function_to_apply='relu'"),
        ({"temperature": 1.0}, "does not accept option"),
        ({"truncation": "sometimes"}, "truncation='sometimes'"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_options(pair, kwargs, match):
    _, pipe, _ = pair
    with pytest.raises(InvalidInputError, match=match):
        pipe("text", **kwargs)


def test_nested_list_pair_is_refused_like_the_reference(pair):
    ref, pipe, _ = pair
    with pytest.raises(ValueError, match="text_pair"):
        ref([["premise", "hypothesis"]])
    with pytest.raises(InvalidInputError, match="text_pair"):
        pipe([["premise", "hypothesis"]])


def test_empty_list_gives_empty_list(pair):
    ref, pipe, _ = pair
    assert pipe([]) == [] == ref([])


def test_pickle_roundtrip(pair):
    import pickle

    _, pipe, _ = pair
    clone = pickle.loads(pickle.dumps(pipe))
    assert clone("pickled") == pipe("pickled") and clone.dtype == pipe.dtype
