"""text-generation on the tiny GPT-2 bundle: token-for-token parity with transformers (greedy, beam search,
batched left-padded prompts), sampling processors' parity step by step, streaming, q8 and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.generation import CausalLM, GenerationConfig, build_processors, generate
from edgetf.generation.search import prepare_lengths

PROMPTS = [
    "The quick brown fox",
    "Hugging Face builds tools for machine learning; transformers is one of them.",
    "Café, naïve 😀",
    "",
]
GREEDY = {"do_sample": False, "max_new_tokens": 14}
BEAM = {
    "do_sample": False,
    "num_beams": 4,
    "num_return_sequences": 3,
    "no_repeat_ngram_size": 2,
    "length_penalty": 1.7,
    "max_new_tokens": 10,
}
MIXED = {
    "do_sample": False,
    "max_new_tokens": 10,
    "repetition_penalty": 1.3,
    "min_new_tokens": 4,
    "bad_words_ids": [[5], [7, 8]],
}


@pytest.fixture(scope="module")
def built(tiny):
    return tiny.get("gpt2")


@pytest.fixture(scope="module")
def pipe(built):
    return edgetf.pipeline("text-generation", built.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ref(reference, built):
    return reference("text-generation", built)


@pytest.mark.parametrize("options", [GREEDY, BEAM, MIXED, {**GREEDY, "return_full_text": False}], ids=str)
def test_matches_reference_pipeline(pipe, ref, options):
    for prompt in PROMPTS:
        assert pipe(prompt, **options) == ref(prompt, **options), prompt
    options = {k: v for k, v in options.items() if k != "return_full_text"}
    tokens = pipe(PROMPTS[0], return_tensors=True, **options)
    want = ref(PROMPTS[0], return_tensors=True, **options)
    assert tokens == [{"generated_token_ids": [int(t) for t in r["generated_token_ids"]]} for r in want]


def test_prompt_list_and_output_shape(pipe, ref):
    got = pipe(PROMPTS[:3], **BEAM)
    assert len(got) == 3 and all(len(x) == 3 and set(x[0]) == {"generated_text"} for x in got)
    assert got == ref(PROMPTS[:3], **BEAM)
    assert all(r["generated_text"].startswith(p) for x, p in zip(got, PROMPTS) for r in x)


def test_left_padded_batch_matches_generate(pipe, built):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(built.checkpoint, padding_side="left")
    tok.pad_token = tok.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(built.checkpoint).eval()
    enc = tok(PROMPTS[:3], return_tensors="pt", padding=True)
    gen = GenerationConfig.from_dict(pipe.model_generation.to_dict())
    lm = CausalLM(pipe.session(), pipe.bundle.config)
    for options in (GREEDY, BEAM, {**MIXED, "no_repeat_ngram_size": 3}):
        with torch.no_grad():
            want = model.generate(**enc, pad_token_id=tok.eos_token_id, **options).numpy()
        cfg = gen.copy()
        cfg.update(**options)
        got = generate(lm, enc["input_ids"].numpy(), cfg, attention_mask=enc["attention_mask"].numpy())
        np.testing.assert_array_equal(got.sequences, want)
    # and through the pipeline: batched prompts give the one-by-one texts
    assert pipe(PROMPTS, batch_size=3, **GREEDY) == pipe(PROMPTS, **GREEDY)


@pytest.mark.parametrize("io_binding", [False, True])
def test_io_binding_and_plain_cache_agree(pipe, io_binding):
    ids = np.array([[3, 17, 42, 8]])
    cfg = GenerationConfig(max_new_tokens=12, num_beams=3, eos_token_id=0)
    plain = generate(CausalLM(pipe.session(), pipe.bundle.config), ids, cfg).sequences
    other = generate(CausalLM(pipe.session(), pipe.bundle.config, io_binding=io_binding), ids, cfg).sequences
    np.testing.assert_array_equal(plain, other)


def test_shared_cache_buffer_equals_the_copying_cache(pipe):
    """The fused graph's one-buffer cache (past = present, written in place) gives the copying cache's logits
    through a left-padded batch, beam reorders, expansion and growth past the buffer's capacity; a step within
    capacity allocates no new cache."""
    shared = CausalLM(pipe.session(), pipe.bundle.config)
    plain = CausalLM(pipe.session(), pipe.bundle.config, shared_buffer=False)
    assert shared.shared_buffer and not plain.shared_buffer
    shared.min_capacity = 3  # grow early
    ids = np.array([[3, 17, 42, 8], [0, 0, 5, 9]])
    mask = (ids != 0).astype(np.int64)
    np.testing.assert_allclose(shared.prefill(ids, mask), plain.prefill(ids, mask), atol=1e-5)
    capacity = shared.cache[shared.past_names[0]].shape[2]
    assert capacity == 4 + 4
    rng = np.random.default_rng(0)
    for step in range(9):
        if step == 2:  # beams swap rows
            shared.select(np.array([1, 0]))
            plain.select(np.array([1, 0]))
        if step == 5:  # expansion to three rows
            shared.select(np.array([0, 0, 1]))
            plain.select(np.array([0, 0, 1]))
            mask = mask[[0, 0, 1]]
        before = shared.cache[shared.past_names[0]]
        token = rng.integers(1, 50, (mask.shape[0], 1))
        mask = np.concatenate([mask, np.ones((mask.shape[0], 1), np.int64)], axis=1)
        np.testing.assert_allclose(shared.step(token, mask), plain.step(token, mask), atol=1e-5)
        grown = shared.cache[shared.past_names[0]].shape[2] > before.shape[2]
        assert grown or shared.cache[shared.past_names[0]] is before  # written in place
    assert shared.cache[shared.past_names[0]].shape[2] == 2 * capacity and shared.length == mask.shape[1]


def test_teacher_forced_logits_equal_the_cached_steps(pipe):
    lm = CausalLM(pipe.session(), pipe.bundle.config)
    ids = np.array([[3, 17, 42, 8, 9]])
    every = lm.teacher_forced_logits(ids)
    steps = [lm.prefill(ids[:, :2], None)] + [lm.step(ids[:, i : i + 1], None) for i in range(2, ids.shape[1])]
    np.testing.assert_allclose(every[:, 1:], np.stack(steps, axis=1), atol=1e-4)


def test_sampling_processed_scores_match_reference_step_by_step(pipe, built):
    """Sampling: the processed logits at every step equal transformers' (no torch RNG equality needed)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(built.checkpoint)
    model = transformers.AutoModelForCausalLM.from_pretrained(built.checkpoint).eval()
    options = {
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 30,
        "top_p": 0.85,
        "repetition_penalty": 1.2,
        "no_repeat_ngram_size": 3,
        "max_new_tokens": 10,
    }
    for extra in ({}, {"min_p": 0.05, "top_k": 0}, {"typical_p": 0.8}):
        enc = tok("The quick brown fox", return_tensors="pt")
        torch.manual_seed(0)
        with torch.no_grad():
            ref = model.generate(
                **enc, pad_token_id=0, output_scores=True, return_dict_in_generate=True, **{**options, **extra}
            )
        seq = ref.sequences.numpy()
        cfg = pipe.model_generation.copy()
        cfg.update(**{**options, **extra})
        prompt_len = enc["input_ids"].shape[1]
        cfg = prepare_lengths(cfg, prompt_len)
        processors = build_processors(cfg, prompt_len)
        lm = CausalLM(pipe.session(), pipe.bundle.config)
        logits = lm.prefill(seq[:, :prompt_len], np.ones((1, prompt_len), dtype=np.int64))
        for step, want in enumerate(ref.scores):
            length = prompt_len + step
            got = processors(seq[:, :length], logits)
            want = want.numpy()
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], atol=1e-4, rtol=0)
            if length < seq.shape[1] - 1:
                logits = lm.step(seq[:, length : length + 1], np.ones((1, length + 1), dtype=np.int64))


def test_seeded_sampling_is_reproducible(pipe):
    a = pipe(PROMPTS[0], max_new_tokens=12, seed=3, num_return_sequences=2)
    b = pipe(PROMPTS[0], max_new_tokens=12, seed=3, num_return_sequences=2)
    c = pipe(PROMPTS[0], max_new_tokens=12, seed=4, num_return_sequences=2)
    assert a == b and a != c and len(a) == 2
    seeded = edgetf.pipeline("text-generation", pipe.bundle.root, dtype="fp32", seed=5)
    first, second = seeded(PROMPTS[0], max_new_tokens=8), seeded(PROMPTS[0], max_new_tokens=8)
    again = edgetf.pipeline("text-generation", pipe.bundle.root, dtype="fp32", seed=5)
    assert again(PROMPTS[0], max_new_tokens=8) == first and again(PROMPTS[0], max_new_tokens=8) == second


def test_stop_strings_match_generate(pipe, built):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(built.checkpoint)
    model = transformers.AutoModelForCausalLM.from_pretrained(built.checkpoint).eval()
    full = pipe(PROMPTS[0], return_full_text=False, **GREEDY)[0]["generated_text"]
    stop = full[5:8]
    enc = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        want = model.generate(**enc, stop_strings=[stop], tokenizer=tok, pad_token_id=0, **GREEDY)
    got = pipe(PROMPTS[0], stop_strings=[stop], return_tensors=True, **GREEDY)
    assert got[0]["generated_token_ids"] == want[0].tolist()
    assert len(want[0]) < enc["input_ids"].shape[1] + GREEDY["max_new_tokens"]


def test_stop_sequence_as_reference(pipe, ref):
    full = pipe(PROMPTS[1], return_full_text=False, **GREEDY)[0]["generated_text"]
    stop = full.split()[1] if len(full.split()) > 1 else full[:3]
    assert pipe(PROMPTS[1], stop_sequence=stop, **GREEDY) == ref(PROMPTS[1], stop_sequence=stop, **GREEDY)


def test_stream_yields_the_new_text(pipe):
    for prompt in PROMPTS:
        pieces = list(pipe.stream(prompt, **GREEDY))
        # a random model can emit invalid byte sequences: U+FFFD then belongs to the final text too
        assert "".join(pieces) == pipe(prompt, return_full_text=False, **GREEDY)[0]["generated_text"]
    assert len(list(pipe.stream(PROMPTS[0], **GREEDY))) > 1
    with pytest.raises(InvalidInputError, match="num_beams"):
        list(pipe.stream(PROMPTS[0], num_beams=2))


def test_stream_can_be_abandoned(pipe, monkeypatch):
    steps = []
    model = pipe.model

    def counting_model() -> CausalLM:
        lm = model()
        step = lm.step
        lm.step = lambda *args: steps.append(1) or step(*args)
        return lm

    monkeypatch.setattr(pipe, "model", counting_model)
    stream = pipe.stream(PROMPTS[0], do_sample=False, max_new_tokens=200)
    first = next(stream)
    taken = len(steps)
    stream.close()  # generation stops here: no further model step
    assert first and list(stream) == [] and len(steps) == taken < 200


def test_default_options_sample_as_the_reference_pipeline_does(pipe):
    cfg = pipe.resolve({})
    assert (cfg.do_sample, cfg.temperature, cfg.max_new_tokens) == (True, 0.7, 256)


def test_context_window(pipe):
    window = pipe.max_positions
    with pytest.warns(UserWarning, match="positions"):
        out = pipe("hello " * 10, max_new_tokens=window, do_sample=False, return_tensors=True)
    assert len(out[0]["generated_token_ids"]) == window
    long_prompt = "word " * (window + 10)
    with pytest.raises(InvalidInputError, match="context window"):
        pipe(long_prompt, **GREEDY)
    hole = pipe(long_prompt, handle_long_generation="hole", return_tensors=True, **GREEDY)
    assert len(hole[0]["generated_token_ids"]) == window


@pytest.mark.parametrize(
    "options,match",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"num_beams": 2, "num_return_sequences": 3, "do_sample": False}, "num_return_sequences"),
        ({"do_sample": True, "temperature": 0.0}, "temperature"),
        ({"do_sample": True, "top_p": 2.0}, "top_p"),
        ({"handle_long_generation": "tail"}, "handle_long_generation"),
        ({"nucleus": 0.9}, "does not accept"),
        ({"return_full_text": True, "return_tensors": True}, "mutually exclusive"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_bad_options(pipe, options, match):
    with pytest.raises(InvalidInputError, match=match):
        pipe(PROMPTS[0], **options)


@pytest.mark.parametrize("value", [None, 3, [], [1, 2], [{"role": "user", "content": "hi"}]])
def test_bad_inputs(pipe, value):
    with pytest.raises(InvalidInputError):
        pipe(value, **GREEDY)


def test_q8_is_quantized_and_agrees(built):
    report = built.manifest["dtypes"]["q8"]
    assert report["passed"] and report["parity"]["agreement"] >= 0.9
    assert report["recipe"]["model"]["untied_transposed_weights"] == 1
    import onnx

    model = onnx.load(str(built.bundle / "onnx/model_quantized.onnx"))
    head = [n for n in model.graph.node if n.name.startswith("/lm_head/")]
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in head)
    q8 = edgetf.pipeline("text-generation", built.bundle, dtype="q8")
    new = q8(PROMPTS[0], return_full_text=False, **GREEDY)[0]["generated_text"]
    assert new and q8(PROMPTS[0], **GREEDY) == [{"generated_text": PROMPTS[0] + new}]


def test_demo_input(pipe):
    out = pipe(pipe.demo_input(), max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith(pipe.demo_input())


def test_q4_quantizes_every_linear_layer_and_the_head(built, tmp_path):
    """GPT-2's linear layers export as Gemm and its head as MatMul(Transpose(embedding)); MatMulNBits only
    replaces MatMul with a constant weight, so without the rewrites a "q4" file would stay float."""
    import onnx
    import onnxruntime as ort

    from export.quantize import make_dtype

    src = built.bundle / "onnx/model.onnx"
    dst = tmp_path / "model_q4.onnx"
    recipe = make_dtype(
        src, dst, "q4", target=None, level="all", quant={"untie_lm_head": True}, default_ops=("MatMul",)
    )
    model = onnx.load(str(dst))
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    float_linear = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul") and n.input[1] in weights]
    layers = onnx.load(str(src), load_external_data=False)
    gemms = sum(n.op_type == "Gemm" for n in layers.graph.node)
    constant = {i.name for i in layers.graph.initializer}
    linear = gemms + sum(n.op_type == "MatMul" and n.input[1] in constant for n in layers.graph.node)
    assert float_linear == [] and recipe["gemms_as_matmuls"] == gemms and linear > 0
    assert sum(n.op_type == "MatMulNBits" for n in model.graph.node) == linear + 1  # + the untied head
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            shape = [1 if d == "batch_size" else 0 if isinstance(d, str) else d for d in i.shape]
            feeds[i.name] = np.zeros(shape, np.float32)
        else:
            feeds[i.name] = {"input_ids": np.array([[5, 6, 7]]), "position_ids": np.array([[0, 1, 2]])}.get(
                i.name, np.ones((1, 3), np.int64)
            )
    feeds["logits_to_keep"] = np.array([0])  # every position (the fused graph's default is the last only)
    logits = session.run(["logits"], feeds)[0]
    assert logits.shape[:2] == (1, 3) and np.isfinite(logits).all()
