"""fill-mask parity with transformers' pipeline: BERT (WordPiece) and RoBERTa (byte-level BPE)."""

import pickle

import numpy as np
import pytest
from helpers import assert_random_gate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.fill_mask import filled, top_predictions
from export.catalog import long_text
from export.tasks.encoder import compare, masked_inputs

MODELS = ["bert-fill-mask", "roberta-fill-mask"]
TEXTS = [
    "The weather in Paris is lovely in the spring.",
    "Café, naïve, résumé, façade, Straße, Łódź, São Paulo.",
    "東京は日本の首都です。我喜欢学习中文。",
    "Emoji are everywhere 😀🎉👍🏽 and people ❤️ them 🚀.",
    "Punctuation runs!!! ??? ... --- *** ###",
    "Tabs\tand    multiple   spaces,\n\nand newlines.",
    "",
]


@pytest.fixture(scope="module", params=MODELS)
def pair(request, tiny, reference):
    built = tiny.get(request.param)
    ref = reference("fill-mask", built)
    return ref, edgetf.pipeline("fill-mask", built.bundle, dtype="fp32"), built


def assert_same(expected, got, tol=1e-4):
    diff, problem = compare(expected, got)
    assert problem is None, problem
    assert diff <= tol


def test_manifest_records_parity(pair):
    _, _, built = pair
    fp32, q8 = built.manifest["dtypes"]["fp32"]["parity"], built.manifest["dtypes"]["q8"]["parity"]
    assert fp32["passed"] and fp32["mismatches"] == 0 and fp32["max_diff"] <= 1e-4 and fp32["agreement"] == 1.0
    assert fp32["no_mask_rejected"]
    assert_random_gate(q8, min_inputs=100)


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": 12}])
def test_varied_inputs_match_reference(pair, kwargs):
    ref, pipe, _ = pair
    for text in masked_inputs(TEXTS, ref.tokenizer.mask_token):  # one mask each, then two masks
        assert_same(ref(text, **kwargs), pipe(text, **kwargs))


def test_structure_single_several_masks_and_lists(pair):
    ref, pipe, _ = pair
    mask = ref.tokenizer.mask_token
    one, two, three = f"Paris is the {mask}.", f"{mask} is the {mask}.", f"{mask} {mask} and {mask}!"
    for inputs in (one, two, three, [one, two], [one], [two], [one, one, three]):
        expected, got = ref(inputs, top_k=3), pipe(inputs, top_k=3)
        assert_same(expected, got)
    rows = pipe(three, top_k=2)
    assert len(rows) == 3 and all(len(row) == 2 for row in rows)
    assert all(row[0]["sequence"].count(mask) == 2 for row in rows)  # the other masks stay in place
    assert list(pipe(one)[0]) == ["score", "token", "token_str", "sequence"]
    assert type(pipe(one)[0]["score"]) is float and type(pipe(one)[0]["token"]) is int


def test_targets_match_reference(pair):
    ref, pipe, _ = pair
    text = f"The weather in Paris is {ref.tokenizer.mask_token} in the spring."
    vocab_words = [w for w in ("the", "is", "in", "Ġthe", "Ġin", "##s") if w in ref.tokenizer.get_vocab()]
    for targets in (vocab_words, vocab_words[0], vocab_words + ["zzzqqxx", "Łódź"], ["東京"]):
        expected = ref(text, targets=targets, top_k=3)
        unknown = any(t not in vocab_words for t in ([targets] if isinstance(targets, str) else targets))
        with pytest.warns(UserWarning) if unknown else _no_warning():
            got = pipe(text, targets=targets, top_k=3)
            target_ids = pipe.target_ids(targets)
        assert_same(expected, got)
        assert len(got) == min(3, len(target_ids)) and {p["token"] for p in got} <= set(target_ids.tolist())


def test_long_inputs(pair):
    ref, pipe, _ = pair
    mask = ref.tokenizer.mask_token
    early = f"Paris is the {mask}. " + long_text(3000)
    late = long_text(3000) + f" the {mask}."
    both = f"{mask} is here. " + late
    kwargs = {"tokenizer_kwargs": {"truncation": True}}
    assert_same(ref(early, **kwargs), pipe(early, **kwargs))
    assert_same(ref(both, **kwargs), pipe(both, **kwargs))  # transformers: the cut-off mask is dropped
    assert_same(ref(early, **kwargs), pipe(early))  # edgetf default: truncate when no mask is lost
    with pytest.raises(InvalidInputError, match="1 of its 2 mask tokens"):
        pipe(both)  # ...and say so when one would be
    with pytest.raises(InvalidInputError, match="No mask_token"):
        pipe(late, **kwargs)
    with pytest.raises(InvalidInputError, match="longer than the model's maximum"):
        pipe(early, tokenizer_kwargs={"truncation": False})


@pytest.mark.parametrize("bad", ["no mask token here", "", 5, None, ["ok", 3], {"text": "a"}])
def test_bad_inputs_raise_invalid_input(pair, bad):
    ref, pipe, _ = pair
    mask = ref.tokenizer.mask_token
    if isinstance(bad, list):
        bad = [f"{bad[0]} {mask}", bad[1]]
    with pytest.raises(InvalidInputError):
        pipe(bad)
    with pytest.raises(Exception):  # noqa: B017 -- the reference raises PipelineException / ValueError too
        ref(bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"top_k": 0}, {"top_k": 10**6}, {"targets": 5}, {"targets": []}, {"tokenizer_kwargs": {"padding": "x"}}],
)
def test_bad_options_raise_invalid_input(pair, kwargs):
    ref, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(f"Paris is the {ref.tokenizer.mask_token}.", **kwargs)


def test_demo_and_pickle(pair):
    _, pipe, _ = pair
    demo = pipe.demo_input()
    again = pickle.loads(pickle.dumps(pipe))
    assert again(demo) == pipe(demo)


# -- pure helpers against torch's topk on hand-made arrays --------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_top_predictions_match_torch_topk(seed):
    import torch

    rng = np.random.default_rng(seed)
    probs = rng.random((3, 50)).astype(np.float32)
    values, ids = top_predictions(probs, 7, None)
    ref_values, ref_ids = torch.from_numpy(probs).topk(7)
    np.testing.assert_array_equal(values, ref_values.numpy())
    np.testing.assert_array_equal(ids, ref_ids.numpy())
    targets = rng.choice(50, size=5, replace=False)
    values, ids = top_predictions(probs, 7, targets)  # capped at the 5 targets
    ref_values, ref_pos = torch.from_numpy(probs)[..., targets].topk(5)
    np.testing.assert_array_equal(values, ref_values.numpy())
    np.testing.assert_array_equal(ids, targets[ref_pos.numpy()])


def test_filled_replaces_one_position_and_drops_padding():
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.integers(1, 100, size=9), np.zeros(4, dtype=np.int64)])
    before = ids.copy()
    out = filled(ids, 3, 999, pad_token_id=0)
    assert out[3] == 999 and 0 not in out and len(out) == 9
    assert np.array_equal(np.delete(out, 3), np.delete(before[:9], 3))
    assert np.array_equal(ids, before)  # the input is not modified


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# -- arbitrary text around a mask: same output as the reference ---------------------------------------
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(before=st.text(max_size=80), after=st.text(max_size=80))
def test_any_text_matches_reference(pair, before, after):
    ref, pipe, _ = pair
    text = before + ref.tokenizer.mask_token + after
    kwargs = {"top_k": 3, "tokenizer_kwargs": {"truncation": True}}  # (transformers fails on over-long input)
    try:
        expected = ref(text, **kwargs)
    except Exception:  # noqa: BLE001 -- e.g. the mask cut off by truncation: no mask found
        with pytest.raises(InvalidInputError):
            pipe(text, **kwargs)
        return
    assert_same(expected, pipe(text, **kwargs))


def test_batch_size_gives_the_same_predictions(pair):
    ref, pipe, _ = pair
    texts = masked_inputs(TEXTS, ref.tokenizer.mask_token)
    assert_same(pipe(texts, top_k=3), pipe(texts, top_k=3, batch_size=4), tol=1e-5)
    assert pipe([]) == ref([]) == []
    with pytest.raises(InvalidInputError):
        pipe(texts, batch_size=0)
