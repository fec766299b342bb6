"""Property-based tests of the pure post-processing functions: random but well-shaped model outputs
(NaN, +-inf, ties, empty and fully masked rows) keep every documented invariant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgetf.generation.logits import MinP, NoRepeatNGram, RepetitionPenalty, Temperature, TopK, TopP, Typical
from edgetf.pipelines.depth_estimation import depth_image, post_process_depth
from edgetf.pipelines.object_detection import post_process_detection
from edgetf.text.ctc import CTCVocab
from edgetf.text.spans import decode_spans, span_probabilities
from edgetf.vision.interpolate import bicubic, bilinear, nearest
from edgetf.vision.topk import topk_unsorted

FAST = settings(max_examples=60, deadline=None)
ANY_FLOAT = st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
FINITE = st.floats(-50, 50, width=32)


def logits(elements=FINITE, rows=(1, 3), vocab=(1, 40)):
    return hnp.arrays(np.float32, st.tuples(st.integers(*rows), st.integers(*vocab)), elements=elements)


# -- CTC ---------------------------------------------------------------------------------------------
VOCAB = CTCVocab({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4, "c": 5}, {})


@FAST
@given(st.lists(st.integers(-3, 9), max_size=60))
def test_ctc_decode_collapses_repeats_and_offsets_stay_in_the_input(ids):
    text = VOCAB.decode(ids)
    offsets = VOCAB.char_offsets(ids)
    assert len(offsets) <= len(ids) and all(0 <= o.start_offset < o.end_offset <= len(ids) for o in offsets)
    assert all(a.end_offset <= b.start_offset for a, b in zip(offsets, offsets[1:]))
    # a repeated id collapses: the same character twice in a row needs a blank (a gap) between them
    assert all(a.end_offset < b.start_offset for a, b in zip(offsets, offsets[1:]) if a.char == b.char)
    assert text == text.strip() and len(text) <= len(ids) * len("<unk>")
    for word in VOCAB.word_offsets(offsets):
        assert word.word and " " not in word.word and word.start_offset < word.end_offset


# -- question answering spans --------------------------------------------------------------------------
@FAST
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, n, elements=ANY_FLOAT),
            hnp.arrays(np.float32, n, elements=ANY_FLOAT),
            hnp.arrays(np.int64, n, elements=st.integers(0, 1)),
        )
    ),
    st.integers(1, 25),
    st.integers(1, 20),
)
def test_decoded_spans_start_before_end_within_the_context(case, top_k, max_answer_len):
    start_logits, end_logits, allowed = case
    start, end = span_probabilities(start_logits, end_logits, allowed)
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, allowed)
    assert len(starts) == len(ends) == len(scores) <= top_k
    eligible = set(np.flatnonzero(allowed).tolist()) | {0}
    for s, e in zip(starts.tolist(), ends.tolist()):
        assert 0 <= s <= e < len(allowed) and e - s < max_answer_len and s in eligible and e in eligible
    finite = np.isfinite(start_logits).all() and np.isfinite(end_logits).all()
    if finite:
        assert np.all(np.diff(scores) <= 0) and np.all(scores >= 0)


# -- torch.topk replay ----------------------------------------------------------------------------------
@FAST
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), ANY_FLOAT), min_size=0, max_size=200), st.data())
def test_topk_unsorted_picks_the_k_largest(values, data):
    k = data.draw(st.integers(0, len(values)))
    picked = topk_unsorted(values, k)
    assert len(picked) == k == len(set(picked))
    key = [(np.isnan(v), v if not np.isnan(v) else 0.0) for v in values]
    rest = sorted((key[i] for i in set(range(len(values))) - set(picked)), reverse=True)
    assert not rest or not picked or min(key[i] for i in picked) >= rest[0]
    torch = pytest.importorskip("torch")
    if k:
        expected = torch.topk(torch.tensor(values, dtype=torch.float32), k, sorted=False).indices.tolist()
        assert picked == expected


# -- logits processors ---------------------------------------------------------------------------------
WARPERS = st.one_of(
    st.integers(1, 50).map(TopK),
    st.floats(0, 1).map(TopP),
    st.floats(0, 1).map(MinP),
    st.floats(0.01, 0.99).map(Typical),
    st.floats(0.05, 5).map(Temperature),
    st.floats(0.5, 3).map(RepetitionPenalty),
    st.integers(1, 4).map(NoRepeatNGram),
)


@FAST
@given(logits(st.one_of(FINITE, st.just(-np.inf))), st.lists(WARPERS, min_size=1, max_size=3), st.data())
def test_logits_processors_keep_shape_and_a_finite_choice(scores, processors, data):
    """From rows with at least one finite logit: same shape, no NaN, and some token still finite (unless
    no_repeat_ngram bans every token, as it may)."""
    scores[:, 0] = data.draw(FINITE)  # at least one finite logit per row
    ids = data.draw(
        hnp.arrays(
            np.int64, (scores.shape[0], data.draw(st.integers(1, 8))), elements=st.integers(0, scores.shape[1] - 1)
        )
    )
    out = scores
    for processor in processors:
        out = processor(ids, out)
        assert out.shape == scores.shape and not np.isnan(out).any()
        assert np.isfinite(out).any(axis=-1).all() or any(isinstance(p, NoRepeatNGram) for p in processors)


# -- detection, depth, interpolation --------------------------------------------------------------------
@FAST
@given(
    st.integers(0, 20).flatmap(
        lambda q: st.tuples(logits(ANY_FLOAT, (q, q), (2, 6)), logits(ANY_FLOAT, (q, q), (4, 4)))
    ),
    st.floats(0, 1),
    st.one_of(st.none(), st.tuples(st.integers(1, 5000), st.integers(1, 5000))),
)
def test_detection_scores_above_threshold(outputs, threshold, size):
    scores, labels, boxes = post_process_detection(outputs[0], outputs[1], threshold, size)
    assert len(scores) == len(labels) == len(boxes) and boxes.shape[1:] == (4,)
    assert np.all(scores > threshold) and np.all(scores <= 1)
    assert np.all((labels >= 0) & (labels < outputs[0].shape[1] - 1))


MAPS = hnp.arrays(
    np.float32, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.floats(-100, 100, width=32)
)
SIZES = st.tuples(st.integers(1, 40), st.integers(1, 40))


@FAST
@given(MAPS, SIZES)
@example(np.full((4, 4), 2.5, np.float32), (8, 8))  # a flat depth map: 0/0 in the min-max scaling
@example(np.zeros((2, 2), np.float32), (1, 5))  # np.squeeze dropped the height of 1
def test_depth_map_resizes_and_renders(depth, size):
    resized = post_process_depth(depth, size)
    assert resized.shape == size and np.isfinite(resized).all()
    image = np.asarray(depth_image(resized))
    assert image.shape == size and image.dtype == np.uint8


@FAST
@given(MAPS, SIZES)
def test_interpolation_shapes_and_bounds(x, size):
    low, high = x.min(), x.max()
    for fn in (bilinear, nearest, bicubic):
        out = fn(x[None, None], size)
        assert out.shape == (1, 1, *size) and out.dtype == np.float32 and np.isfinite(out).all()
    for fn in (bilinear, nearest):  # convex combinations stay within the input's range
        out = fn(x[None, None], size)
        assert out.min() >= low - 1e-4 * max(1, abs(low)) and out.max() <= high + 1e-4 * max(1, abs(high))
