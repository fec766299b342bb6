"""question-answering parity with transformers' pipeline: DistilBERT (WordPiece) and RoBERTa (byte-level BPE)."""

import pickle

import numpy as np
import pytest
from helpers import assert_random_gate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.__main__ import main as cli
from edgetf.errors import InvalidInputError
from edgetf.text import spans as sp
from export.catalog import long_text
from export.tasks.encoder import compare

MODELS = ["distilbert-squad", "roberta-squad"]
CONTEXT = "My name is Wolfgang and I live in Berlin. Café, naïve, 東京 😀 -- new\n\nlines!!"
PAIRS = [
    ("Where do I live?", CONTEXT),
    ("Qu'est-ce ? 東京", "Café, naïve, résumé, façade, Straße, Łódź, São Paulo."),
    ("Why 😀?", "Emoji are everywhere 😀🎉👍🏽 and people ❤️ them 🚀."),
    ("What?", "Tabs\tand    multiple   spaces,\n\nand newlines."),
    ("Which runs?", "Punctuation runs!!! ??? ... --- *** ###"),
    ("What is long?", long_text(700)),
]


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    ref = reference("question-answering", built)
    return ref, edgetf.pipeline("question-answering", built.bundle, dtype="fp32"), built


def assert_same(expected, got, tol=1e-4):
    diff, problem = compare(expected, got)
    assert problem is None, problem
    assert diff <= tol


def test_manifest_records_parity(pair):
    _, _, built = pair
    fp32, q8 = built.manifest["dtypes"]["fp32"]["parity"], built.manifest["dtypes"]["q8"]["parity"]
    assert fp32["passed"] and fp32["mismatches"] == 0 and fp32["max_diff"] <= 1e-4 and fp32["agreement"] == 1.0
    assert fp32["empty_context_rejected"]
    assert_random_gate(q8, min_inputs=100)
    assert q8["agreement"] <= q8["top_answer_in_reference_top3"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"top_k": 3},
        {"top_k": 40},
        {"top_k": 2, "handle_impossible_answer": True},
        {"top_k": 4, "align_to_words": False},
        {"max_answer_len": 2, "top_k": 2},
        {"max_seq_len": 48, "doc_stride": 16, "top_k": 3},
        {"padding": "max_length", "top_k": 2},
        {"padding": True, "max_seq_len": 64, "doc_stride": 20},
    ],
)
def test_varied_inputs_match_reference(pair, kwargs):
    ref, pipe, _ = pair
    for question, context in PAIRS:
        assert_same(
            ref(question=question, context=context, **kwargs), pipe(question=question, context=context, **kwargs)
        )


def test_input_forms_match_reference(pair):
    ref, pipe, _ = pair
    q, c = PAIRS[0]
    forms = [
        ((), {"question": q, "context": c}),
        (({"question": q, "context": c},), {}),
        ((q, c), {}),
        (([{"question": q, "context": c}, {"question": "Who?", "context": PAIRS[1][1]}],), {}),
        ((), {"question": [q, "Who?", "How?"], "context": c}),
        ((), {"question": [q, "Who?"], "context": [c, PAIRS[2][1]]}),
        ((), {"question": [q], "context": [c]}),  # one example: a single result, not a list
        (({"question": q, "context": c}, {"question": "Who?", "context": c}), {}),
    ]
    for args, kwargs in forms:
        assert_same(ref(*args, **kwargs), pipe(*args, **kwargs))


def test_answers_index_the_context(pair):
    _, pipe, _ = pair
    question, context = PAIRS[-1]
    answers = pipe(question=question, context=context, top_k=5, max_seq_len=64, doc_stride=16)
    assert len(answers) == 5
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    for answer in answers:
        assert list(answer) == ["score", "start", "end", "answer"] and type(answer["score"]) is float
        assert context[answer["start"] : answer["end"]] == answer["answer"]
    assert max(a["end"] for a in answers) > 0


def test_every_window_can_answer(pair):
    """The context is read in windows: the best answers come from past the first window."""
    _, pipe, _ = pair
    question, context = PAIRS[-1]
    answers = pipe(question=question, context=context, top_k=30, max_seq_len=48, doc_stride=8)
    first_window_chars = pipe.tokenizer.encode(question, context, truncation="only_second", max_length=48)
    last_char = max(end for (_, end), sid in zip(first_window_chars.offsets, first_window_chars.sequence_ids) if sid)
    assert any(a["start"] > last_char for a in answers)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((), {"question": "", "context": CONTEXT}),
        ((), {"question": "Where?", "context": ""}),
        (({"question": "Where?", "context": None},), {}),
        (({"question": "Where?"},), {}),
        ((), {"question": 5, "context": CONTEXT}),
        ((), {"question": ["a", "b"], "context": ["c"]}),
        ((), {"question": "Where? " * 100, "context": CONTEXT}),
        ((), {"question": "Where?", "context": CONTEXT, "doc_stride": 200, "max_seq_len": 100}),
        (("just one string",), {}),
        ((), {}),
    ],
)
def test_bad_input_raises_like_reference(pair, args, kwargs):
    ref, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(*args, **kwargs)
    with pytest.raises(Exception):  # noqa: B017 -- the reference raises ValueError, KeyError or tokenizers' Exception
        ref(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"top_k": 0}, {"max_answer_len": 0}, {"doc_stride": -1}, {"padding": "sideways"}, {"aggregation_strategy": "x"}],
)
def test_bad_options_raise_invalid_input(pair, kwargs):
    _, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(question="Where?", context=CONTEXT, **kwargs)


def test_stride_too_large_for_the_question_is_explained(pair):
    _, pipe, _ = pair
    question = "What is the name of the person who lives in this city?"
    with pytest.raises(InvalidInputError, match="doc_stride"):
        pipe(question=question, context=PAIRS[-1][1], max_seq_len=40, doc_stride=30)


def test_cli_demo_and_pickle(pair, capsys):
    _, pipe, built = pair
    assert pipe.cli_inputs(["Where?", CONTEXT]) == {"question": "Where?", "context": CONTEXT}
    with pytest.raises(InvalidInputError):
        pipe.cli_inputs(["only a question"])
    assert cli(["run", "question-answering", str(built.bundle), "Where do I live?", CONTEXT]) == 0
    assert '"answer"' in capsys.readouterr().out
    demo = pipe.demo_input()
    again = pickle.loads(pickle.dumps(pipe))
    assert again(demo) == pipe(demo)


# -- the pure span functions, on hand-made arrays, against transformers' own ---------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("top_k,max_answer_len,impossible", [(1, 15, False), (3, 4, True), (50, 30, False)])
def test_span_selection_matches_reference(seed, top_k, max_answer_len, impossible):
    from transformers.pipelines.question_answering import select_starts_ends

    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    start_logits = rng.normal(size=(1, n)).astype(np.float32) * 3
    end_logits = rng.normal(size=(1, n)).astype(np.float32) * 3
    sequence_ids = [None] + [0] * 4 + [None] + [1] * (n - 7) + [None]
    input_ids = rng.integers(5, 100, size=n)
    input_ids[0] = 2  # the CLS id
    attention = np.ones(n, dtype=np.int64)
    padding = int(rng.integers(0, 3))
    if padding:
        attention[-padding:] = 0
    p_mask = np.array([[sid != 1 for sid in sequence_ids]], dtype=np.int64)
    p_mask[0, 0] = 0
    ref_starts, ref_ends, ref_scores, ref_null = select_starts_ends(
        start_logits, end_logits, p_mask, attention[None], 1000000, top_k, impossible, max_answer_len
    )
    allowed = sp.answer_mask(sequence_ids, input_ids, attention, cls_token_id=2)
    start, end = sp.span_probabilities(start_logits[0], end_logits[0], allowed)
    null = min(1000000, (start[0] * end[0]).item()) if impossible else 1000000
    start[0] = end[0] = 0.0
    starts, ends, scores = sp.decode_spans(start, end, top_k, max_answer_len, allowed)
    assert starts.tolist() == ref_starts.tolist() and ends.tolist() == ref_ends.tolist()
    np.testing.assert_array_equal(scores, ref_scores)
    assert null == ref_null


# -- arbitrary text: the reference's answers, or InvalidInputError where the reference refuses ---------
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(question=st.text(max_size=30), context=st.text(max_size=300))
def test_any_text_matches_reference(pair, question, context):
    ref, pipe, _ = pair
    if not question or not context:
        with pytest.raises(ValueError):
            ref(question=question, context=context, top_k=3)
        with pytest.raises(InvalidInputError):
            pipe(question=question, context=context, top_k=3)
        return
    got = pipe(question=question, context=context, top_k=3)
    try:
        expected = ref(question=question, context=context, top_k=3)
    except ValueError as exc:  # transformers fails when a window has exactly top_k * 2 + 10 candidate spans
        assert "out of bounds" in str(exc)
        assert all(context[a["start"] : a["end"]] == a["answer"] for a in as_list(got))
        return
    assert_same(expected, got)


def test_window_with_as_many_spans_as_candidates(pair):
    """A window of n tokens has n * n spans; asking for exactly that many candidates makes transformers'
    argpartition fail (kth out of bounds); edgetf ranks them all."""
    ref, pipe, _ = pair
    n = len(pipe.tokenizer.encode("0", " ").ids)
    kwargs = {"question": "0", "context": " ", "top_k": n * n, "align_to_words": False}
    with pytest.raises(ValueError, match="out of bounds"):
        ref(**kwargs)
    answers = pipe(**kwargs)
    assert all(a["answer"] == " "[a["start"] : a["end"]] for a in as_list(answers))


def as_list(result):
    return result if isinstance(result, list) else [result]


def test_batch_size_gives_the_same_answers(pair):
    _, pipe, _ = pair
    for question, context in PAIRS:
        for kwargs in ({"top_k": 3}, {"top_k": 2, "max_seq_len": 48, "doc_stride": 16, "padding": "max_length"}):
            one = pipe(question=question, context=context, **kwargs)
            assert_same(one, pipe(question=question, context=context, batch_size=3, **kwargs), tol=1e-5)
