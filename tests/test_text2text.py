"""summarization / translation / text2text-generation on the tiny BART and T5 bundles: token-for-token parity
with transformers' pipelines (default beam search from generation_config.json or the pipeline defaults,
greedy, beams with n-gram and length penalties, lists, task prefixes), q8 agreement and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import edgetf
from edgetf.errors import InvalidInputError
from edgetf.generation import GenerationConfig, Seq2SeqDecoder, generate

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Summarization condenses a long document into a short summary that keeps the main points.",
    "Café, naïve, résumé.",
]
GREEDY = {"do_sample": False, "num_beams": 1, "max_new_tokens": 12}
BEAM = {
    "num_beams": 3,
    "num_return_sequences": 2,
    "no_repeat_ngram_size": 2,
    "length_penalty": 0.6,
    "early_stopping": "never",
    "max_new_tokens": 10,
}
SHORT = {"max_new_tokens": 12}  # everything else from generation_config.json / pipeline defaults


@pytest.fixture(scope="module")
def bart(tiny):
    return tiny.get("distilbart-cnn")


@pytest.fixture(scope="module")
def t5(tiny):
    return tiny.get("t5-small")


@pytest.mark.parametrize("options", [{}, GREEDY, BEAM, {**BEAM, "min_new_tokens": 6}], ids=str)
def test_summarization_matches_reference(bart, reference, options):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    ref = reference("summarization", bart)
    for text in TEXTS:
        got = pipe(text, **options)
        assert got == ref(text, **options), text
        assert set(got[0]) == {"summary_text"}
    assert pipe(TEXTS, **options) == ref(TEXTS, **options)


def test_bart_defaults_come_from_generation_config(bart):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    cfg = pipe.resolve({})
    assert (cfg.num_beams, cfg.no_repeat_ngram_size, cfg.length_penalty, cfg.forced_bos_token_id) == (4, 3, 2.0, 0)
    assert cfg.max_new_tokens is None and cfg.max_length == 24  # the model's max_length replaces 256 new tokens
    tokens = pipe(TEXTS[0], return_tensors=True)[0]["summary_token_ids"]
    assert tokens[:2] == [2, 0] and len(tokens) <= 24  # decoder start, forced BOS


@pytest.mark.parametrize(
    "task,settings",
    [
        ("translation", (SHORT, GREEDY, BEAM)),
        ("translation_en_to_fr", (GREEDY,)),
        ("summarization", (SHORT,)),
        ("text2text-generation", (BEAM,)),
    ],
)
def test_t5_tasks_match_reference(t5, reference, task, settings):
    pipe = edgetf.pipeline(task, t5.bundle, dtype="fp32")
    ref = reference(task, t5)
    key = {"translation": "translation_text", "summarization": "summary_text"}.get(task.split("_")[0], "generated_text")
    for options in settings:
        got = pipe(TEXTS, **options)
        assert got == ref(TEXTS, **options), options
        flat = [r for item in got for r in (item if isinstance(item, list) else [item])]
        assert all(set(r) == {key} for r in flat)
    assert pipe(TEXTS[0], return_tensors=True, **GREEDY) == [
        {key.replace("_text", "_token_ids"): list(map(int, r[key.replace("_text", "_token_ids")]))}
        for r in ref(TEXTS[0], return_tensors=True, **GREEDY)
    ]


def test_t5_prefixes_from_task_specific_params(t5):
    params = t5.manifest and edgetf.Bundle.open(t5.bundle).config["task_specific_params"]
    assert edgetf.pipeline("translation", t5.bundle).prefix == params["translation_en_to_de"]["prefix"]
    assert edgetf.pipeline("translation_en_to_fr", t5.bundle).prefix == params["translation_en_to_fr"]["prefix"]
    summ = edgetf.pipeline("summarization", t5.bundle)
    assert summ.prefix == "summarize: "
    assert (summ.resolve({}).num_beams, summ.resolve({}).no_repeat_ngram_size) == (4, 3)
    assert edgetf.pipeline("text2text-generation", t5.bundle).prefix is None


def test_t5_without_generation_settings_uses_pipeline_defaults(t5):
    cfg = edgetf.pipeline("text2text-generation", t5.bundle).resolve({})
    assert (cfg.num_beams, cfg.max_new_tokens, cfg.decoder_start_token_id) == (4, 256, 0)


def test_batched_encoder_matches_generate(bart):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(bart.checkpoint)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(bart.checkpoint).eval()
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    hidden = pipe.session("encoder_model").run(
        {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()}
    )["last_hidden_state"]
    for options in (
        GREEDY,
        BEAM,
        {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True, "max_new_tokens": 14},
    ):
        with torch.no_grad():
            want = model.generate(**enc, **options).numpy()
        cfg = GenerationConfig.from_dict(pipe.model_generation.to_dict())
        cfg.update(**options)
        dec = Seq2SeqDecoder(pipe.session("decoder_model_merged"), hidden, enc["attention_mask"].numpy())
        got = generate(dec, np.full((len(TEXTS), 1), cfg.decoder_start_token_id), cfg)
        np.testing.assert_array_equal(got.sequences, want)
    assert pipe(TEXTS, batch_size=3, **GREEDY) == pipe(TEXTS, **GREEDY)


def test_io_binding_decoder_agrees(bart):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    feeds = pipe.encode(TEXTS[:2], {})
    hidden = pipe.session("encoder_model").run(feeds)["last_hidden_state"]
    cfg = pipe.resolve({"num_beams": 3, "max_new_tokens": 10})
    outs = []
    for io_binding in (False, True):
        dec = Seq2SeqDecoder(
            pipe.session("decoder_model_merged"), hidden, feeds["attention_mask"], io_binding=io_binding
        )
        outs.append(generate(dec, np.full((2, 1), 2), cfg).sequences)
    np.testing.assert_array_equal(*outs)


def test_teacher_forced_logits_equal_the_cached_steps(bart):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    feeds = pipe.encode(TEXTS[:2], {})
    hidden = pipe.session("encoder_model").run(feeds)["last_hidden_state"]
    dec = Seq2SeqDecoder(pipe.session("decoder_model_merged"), hidden, feeds["attention_mask"])
    target = np.array([[2, 11, 7, 30], [2, 5, 19, 4]])
    every = dec.teacher_forced_logits(target)
    steps = [dec.prefill(target[:, :1])] + [dec.step(target[:, i : i + 1]) for i in range(1, target.shape[1])]
    np.testing.assert_allclose(every, np.stack(steps, axis=1), atol=1e-4)


def test_beam_reorders_keep_the_shared_encoder_cache(bart):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    feeds = pipe.encode(TEXTS[:2], {})
    hidden = pipe.session("encoder_model").run(feeds)["last_hidden_state"]
    cfg = pipe.resolve({"num_beams": 3, "max_new_tokens": 10})
    outs = []
    for share in (False, True):
        dec = Seq2SeqDecoder(
            pipe.session("decoder_model_merged"), hidden, feeds["attention_mask"], share_encoder_cache=share
        )
        out = generate(dec, np.full((2, 1), 2), cfg)
        outs.append((out.sequences, out.sequences_scores))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    # after the expansion to beams, a reorder within each input's beams leaves the encoder side alone
    encoder_side = {n: v for n, v in dec.cache.items() if ".encoder." in n}
    dec.select(np.array([2, 2, 0, 4, 3, 5]))
    assert all(dec.cache[n] is v for n, v in encoder_side.items())
    dec.select(np.array([3, 4, 5, 0, 1, 2]))  # rows change input: everything moves
    assert all(dec.cache[n] is not v for n, v in encoder_side.items())
    np.testing.assert_array_equal(dec.encoder_hidden_states, np.repeat(hidden, 3, axis=0)[[3, 4, 5, 0, 1, 2]])


@pytest.mark.parametrize("name", ["distilbart-cnn", "t5-small"])
def test_q8_merged_decoder_is_quantized_and_agrees(tiny, name):
    built = tiny.get(name)
    report = built.manifest["dtypes"]["q8"]
    assert report["passed"] and report["parity"]["agreement"] >= 0.9
    assert report["recipe"]["decoder_model_merged"]["subgraphs"] is True
    import onnx

    def count(path):
        graph = onnx.load(str(built.bundle / path)).graph
        weights = {i.name for i in graph.initializer}
        found = {"quantized": 0, "float_weight_matmul": 0}

        def walk(g):
            for node in g.node:
                if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul"):
                    found["quantized"] += 1
                elif node.op_type == "MatMul" and node.input[1] in weights:
                    found["float_weight_matmul"] += 1
                for attr in node.attribute:
                    if attr.g is not None and attr.g.node:
                        walk(attr.g)

        walk(graph)
        return found

    assert count("onnx/decoder_model_merged.onnx")["float_weight_matmul"] > 0
    q8 = count("onnx/decoder_model_merged_quantized.onnx")
    assert q8["quantized"] > 0 and q8["float_weight_matmul"] == 0  # the If branches were reached, LM head too
    task = built.manifest["task"]
    assert edgetf.pipeline(task, built.bundle, dtype="q8")(TEXTS[0], **GREEDY)


def test_sampling_is_seedable(bart):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    a = pipe(TEXTS[0], do_sample=True, num_beams=1, seed=1, max_new_tokens=10)
    assert a == pipe(TEXTS[0], do_sample=True, num_beams=1, seed=1, max_new_tokens=10)
    beam_sample = pipe(TEXTS[0], do_sample=True, num_beams=3, num_return_sequences=2, seed=2, max_new_tokens=8)
    assert len(beam_sample) == 2


def test_bad_input(bart, t5):
    pipe = edgetf.pipeline("summarization", bart.bundle, dtype="fp32")
    long_text = "word " * 400
    with pytest.raises(InvalidInputError, match="truncation=True"):
        pipe(long_text, **GREEDY)
    # truncation keeps the first window of tokens: what follows it cannot change the summary
    cut = pipe(long_text, truncation=True, **GREEDY)
    assert cut == pipe(long_text + "other words " * 50, truncation=True, **GREEDY) and cut[0]["summary_text"]
    for options, match in [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"num_beams": 2, "num_return_sequences": 4}, "num_return_sequences"),
        ({"do_sample": True, "temperature": -0.5}, "temperature"),
        ({"do_sample": True, "top_p": -0.1}, "top_p"),
        ({"beams": 3}, "does not accept"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            pipe(TEXTS[0], **options)
    for value in (None, 5, [], [1]):
        with pytest.raises(InvalidInputError):
            pipe(value)


def test_empty_input_as_reference(t5, reference):
    pipe = edgetf.pipeline("text2text-generation", t5.bundle, dtype="fp32")
    assert pipe("", **GREEDY) == reference("text2text-generation", t5)("", **GREEDY)


def test_demo_inputs(bart, t5):
    for task, built in (("summarization", bart), ("translation", t5), ("text2text-generation", t5)):
        pipe = edgetf.pipeline(task, built.bundle)
        assert pipe(pipe.demo_input(), max_new_tokens=4)


@pytest.mark.parametrize("name", ["distilbart-cnn", "t5-small"])
def test_one_input_beams_feed_the_exported_encoder_cache_once(tiny, name):
    """The exported merged decoders broadcast a one-row cross-attention cache over the beams: same tokens
    and scores as the tiled cache."""
    built = tiny.get(name)
    pipe = edgetf.pipeline(None, built.bundle, dtype="fp32")
    feeds = pipe.encode(TEXTS[1:2], {})
    hidden = pipe.session("encoder_model").run(feeds)["last_hidden_state"]
    cfg = pipe.resolve({"num_beams": 4, "max_new_tokens": 10})
    outs, rows = [], []
    for share in (False, True):
        dec = Seq2SeqDecoder(
            pipe.session("decoder_model_merged"), hidden, feeds["attention_mask"], share_encoder_cache=share
        )
        out = generate(dec, np.full((1, 1), cfg.decoder_start_token_id), cfg)
        outs.append(out)
        rows.append((dec.encoder_rows, {v.shape[0] for n, v in dec.cache.items() if ".encoder." in n}))
    np.testing.assert_array_equal(outs[0].sequences, outs[1].sequences)
    np.testing.assert_allclose(outs[0].sequences_scores, outs[1].sequences_scores, rtol=1e-6)
    assert rows == [(4, {4}), (1, {1})]
