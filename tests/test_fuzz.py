"""Property-based tests: arbitrary input never escapes as anything but a documented error."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.text_classification import rank_labels, softmax
from edgetf.text.tokenizer import pad_batch

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def classify(tiny):
    return edgetf.pipeline("text-classification", tiny.get("roberta-sentiment").bundle)


@SETTINGS
@given(st.text(max_size=600))
def test_any_unicode_text_classifies(classify, text):
    out = classify(text, top_k=None)
    scores = [d["score"] for d in out]
    assert len(out) == 3 and abs(sum(scores) - 1) < 1e-4 and all(np.isfinite(scores))


@SETTINGS
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.binary(),
        st.lists(st.integers(), min_size=1, max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
)
def test_non_text_inputs_raise_only_invalid_input(classify, value):
    with pytest.raises(InvalidInputError):
        classify(value)


@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=50))
def test_softmax_is_a_distribution(values):
    probs = softmax(np.array(values, dtype=np.float32))
    assert np.all(probs >= 0) and abs(float(probs.sum()) - 1) < 1e-4


@given(st.lists(st.floats(0, 1), min_size=1, max_size=20), st.one_of(st.none(), st.integers(1, 30)))
def test_rank_labels_sorted_and_cut(scores, top_k):
    ranked = rank_labels(np.array(scores), {i: str(i) for i in range(len(scores))}, top_k)
    assert [d["score"] for d in ranked] == sorted((d["score"] for d in ranked), reverse=True)
    assert len(ranked) == (len(scores) if top_k is None else min(top_k, len(scores)))


@given(st.lists(st.lists(st.integers(0, 999), max_size=12), min_size=1, max_size=6), st.sampled_from(["left", "right"]))
def test_pad_batch_keeps_every_token(seqs, side):
    arrays = pad_batch(seqs, None, pad_id=-1, side=side)
    assert arrays["input_ids"].shape[0] == len(seqs)
    for row, seq in zip(arrays["input_ids"], seqs):
        assert [t for t, m in zip(row, arrays["attention_mask"][seqs.index(seq)]) if m] == seq or len(seq) == 0
