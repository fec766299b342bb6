"""feature-extraction parity with transformers' pipeline (BERT / MiniLM-style WordPiece, RoBERTa byte-level
BPE), and the opt-in sentence embeddings against the usual torch computation."""

import pickle

import numpy as np
import pytest
from helpers import assert_random_gate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.pipelines.feature_extraction import l2_normalize, mean_pool
from export.catalog import long_text
from export.tasks.encoder import compare

MODELS = ["minilm-embeddings", "roberta-embeddings"]
TEXTS = [
    "The weather in Paris is lovely in the spring.",
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
    ref = reference("feature-extraction", built)
    return ref, edgetf.pipeline("feature-extraction", built.bundle, dtype="fp32"), built


def torch_embeddings(ref, texts, normalize=True):
    """The sentence-transformers recipe in torch: mean over the attention mask, then F.normalize."""
    import torch

    out = []
    with torch.no_grad():
        for text in texts:
            enc = ref.tokenizer(text, truncation=True, return_tensors="pt")
            hidden = ref.model(**enc)[0]
            mask = enc["attention_mask"].unsqueeze(-1).expand(hidden.size()).float()
            mean = torch.sum(hidden * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
            out.append((torch.nn.functional.normalize(mean, p=2, dim=1) if normalize else mean)[0].numpy())
    return out


def test_manifest_records_parity(pair):
    _, _, built = pair
    fp32, q8 = built.manifest["dtypes"]["fp32"]["parity"], built.manifest["dtypes"]["q8"]["parity"]
    assert fp32["passed"] and fp32["mismatches"] == 0 and fp32["max_diff"] <= 1e-4 and fp32["hidden_max_diff"] <= 1e-4
    assert_random_gate(q8, min_inputs=50)
    assert 0.9 < q8["min_cosine"] <= 1.0 + 1e-6


def test_hidden_states_match_reference(pair):
    ref, pipe, _ = pair
    for text in TEXTS:
        expected, got = ref(text, truncation=True), pipe(text)
        diff, problem = compare(expected, got)
        assert problem is None and diff <= 1e-4, (text[:30], problem, diff)
        assert len(got) == 1 and len(got[0][0]) == pipe.bundle.config["hidden_size"]
    diff, problem = compare(ref(TEXTS[:3]), pipe(TEXTS[:3]))
    assert problem is None and diff <= 1e-4


def test_return_tensors(pair):
    ref, pipe, _ = pair
    expected, got = ref(TEXTS[0], return_tensors=True), pipe(TEXTS[0], return_tensors=True)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    batch = pipe(TEXTS[:2], return_tensors=True)
    assert [b.shape for b in batch] == [tuple(ref(t, return_tensors=True).shape) for t in TEXTS[:2]]


def test_sentence_embeddings_match_torch_computation(pair):
    ref, pipe, _ = pair
    expected = torch_embeddings(ref, TEXTS)
    got = pipe(TEXTS, pooling="mean", normalize=True, return_tensors=True)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and abs(float(np.linalg.norm(g)) - 1.0) < 1e-5
        np.testing.assert_allclose(g, e, atol=1e-5)
    unnormalized = pipe(TEXTS[:2], pooling="mean")
    for e, g in zip(torch_embeddings(ref, TEXTS[:2], normalize=False), unnormalized):
        assert isinstance(g, list) and np.allclose(g, e, atol=1e-4)
    cls = pipe(TEXTS[0], pooling="cls", return_tensors=True)
    np.testing.assert_allclose(cls, np.asarray(ref(TEXTS[0], truncation=True))[0, 0], atol=1e-4)


def test_batching_keeps_each_texts_own_output(pair):
    _, pipe, _ = pair
    one_by_one = [pipe(t, return_tensors=True) for t in TEXTS]
    batched = pipe(TEXTS, batch_size=3, return_tensors=True)
    for a, b in zip(one_by_one, batched):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)
    pooled = pipe(TEXTS, batch_size=4, pooling="mean", normalize=True, return_tensors=True)
    single = [pipe(t, pooling="mean", normalize=True, return_tensors=True) for t in TEXTS]
    np.testing.assert_allclose(np.stack(pooled), np.stack(single), atol=1e-5)


def test_truncation_options(pair):
    ref, pipe, _ = pair
    long = TEXTS[-1]
    limit = pipe.tokenizer.model_max_length
    assert np.asarray(pipe(long)).shape[1] == limit  # cut to the model's maximum by default
    diff, problem = compare(
        ref(long, tokenize_kwargs={"truncation": True}), pipe(long, tokenize_kwargs={"truncation": True})
    )
    assert problem is None and diff <= 1e-4
    short = pipe(long, tokenize_kwargs={"truncation": True, "max_length": 16}, return_tensors=True)
    assert short.shape[1] == 16
    with pytest.raises(InvalidInputError, match="longer than the model's maximum"):
        pipe(long, truncation=False)
    with pytest.raises(InvalidInputError, match="defined twice"):
        pipe("x", truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(ValueError, match="defined twice"):
        ref("x", truncation=True, tokenize_kwargs={"truncation": True})


@pytest.mark.parametrize("bad", [5, None, ["ok", 3], {"text": "a"}])
def test_bad_inputs_raise_invalid_input(pair, bad):
    _, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe(bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"pooling": "max"}, {"normalize": True}, {"batch_size": 0}, {"tokenize_kwargs": {"padding": True}}, {"top_k": 1}],
)
def test_bad_options_raise_invalid_input(pair, kwargs):
    _, pipe, _ = pair
    with pytest.raises(InvalidInputError):
        pipe("text", **kwargs)


def test_demo_and_pickle(pair):
    _, pipe, _ = pair
    demo = pipe.demo_input()
    again = pickle.loads(pickle.dumps(pipe))
    assert again(demo, pooling="mean") == pipe(demo, pooling="mean")


# -- pure pooling helpers against torch on hand-made arrays -------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_pooling_helpers_match_torch(seed):
    import torch

    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(3, 7, 16)).astype(np.float32) * 3
    mask = (rng.random((3, 7)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    mask[2] = 0  # an all-padding row: the clamp keeps it finite (zeros)
    h, m = torch.from_numpy(hidden), torch.from_numpy(mask).unsqueeze(-1).expand(3, 7, 16).float()
    mean = torch.sum(h * m, 1) / torch.clamp(m.sum(1), min=1e-9)
    np.testing.assert_allclose(mean_pool(hidden, mask), mean.numpy(), rtol=1e-6, atol=1e-6)
    normalized = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
    np.testing.assert_allclose(l2_normalize(mean_pool(hidden, mask)), normalized, rtol=1e-6, atol=1e-6)


# -- arbitrary text: same hidden states as the reference -----------------------------------------------
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_matches_reference(pair, text):
    ref, pipe, _ = pair
    diff, problem = compare(ref(text, truncation=True), pipe(text))
    assert problem is None and diff <= 1e-4
