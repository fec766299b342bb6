"""Decoder-only checkpoints outside the catalog — Llama (grouped-query attention, explicit head_dim, untied
head, BOS from the tokenizer's post-processor, an eos_token_id list), Qwen2 (tied head, no BOS, Qwen's
generation settings) and a GPT-2 of a size the catalog does not have — exported as a user would, then
compared with transformers: greedy, beam and batched tokens, sampling's processed scores step by step,
chat input through the chat template, q8 agreement."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgetf
from edgetf.errors import InvalidInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parent.parent
# Llama-3-Instruct's and Qwen2-Instruct's own chat templates.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ARCHS = ("llama", "qwen2", "gpt2")
CHAT_ARCHS = ("llama", "qwen2")
PROMPTS = ["The quick brown fox", "Hugging Face builds tools; transformers is one of them.", "Café 😀", ""]
GREEDY = {"do_sample": False, "max_new_tokens": 12}
BEAM = {
    "do_sample": False,
    "num_beams": 3,
    "num_return_sequences": 2,
    "no_repeat_ngram_size": 2,
    "length_penalty": 1.5,
    "max_new_tokens": 10,
}
MIXED = {"do_sample": False, "max_new_tokens": 10, "repetition_penalty": 1.3, "min_new_tokens": 4}
CHATS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, who are you?"}],
    [{"role": "user", "content": "Name a city."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}],  # prefill: continued
]


# -- checkpoints (small configs, tokenizers trained on export/data) --------------------------------------
def _byte_bpe(specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from export.tiny import corpus_lines

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    return tok


def _llama() -> tuple[Any, Any, dict[str, Any]]:
    """Llama-3 style: BOS added by a TemplateProcessing post-processor, eos list [end_of_text, eot_id]."""
    import transformers
    from tokenizers import processors

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = _byte_bpe(specials)
    bos = tok.token_to_id(specials[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{specials[0]} $A", pair=f"{specials[0]} $A {specials[0]}:1 $B:1", special_tokens=[(specials[0], bos)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=specials[0], eos_token=specials[4], model_max_length=256
    )
    fast.chat_template = LLAMA3_TEMPLATE
    eos = [tok.token_to_id(specials[1]), tok.token_to_id(specials[4])]
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,  # explicit, not hidden_size / heads
        max_position_embeddings=256,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        initializer_range=0.1,  # int8 on random weights drifts more at larger init (EXPORT-NOTES)
    )
    gen = {"bos_token_id": bos, "eos_token_id": eos, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    return transformers.LlamaForCausalLM(config), fast, gen


def _qwen2() -> tuple[Any, Any, dict[str, Any]]:
    """Qwen2 style: no BOS, tied embeddings, eos list [im_end, endoftext], Qwen's sampling settings."""
    import transformers
    from tokenizers import processors

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = _byte_bpe(specials)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = transformers.Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=256,
    )
    fast.chat_template = QWEN2_TEMPLATE
    end, im_end = tok.token_to_id(specials[0]), tok.token_to_id(specials[2])
    config = transformers.Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=end,
        eos_token_id=im_end,
        initializer_range=0.1,  # int8 on random weights drifts more at larger init (EXPORT-NOTES)
    )
    gen = {
        "bos_token_id": end,
        "pad_token_id": end,
        "eos_token_id": [im_end, end],
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }
    return transformers.Qwen2ForCausalLM(config), fast, gen


def _gpt2() -> tuple[Any, Any, dict[str, Any] | None]:
    """A GPT-2 of another shape than the catalog's tiny one (3 layers of width 48, 2 heads, 128 positions)."""
    import transformers

    from export.tiny import train_tokenizer

    fast = train_tokenizer({"kind": "bpe", "class": "GPT2TokenizerFast", "vocab_size": 800}, max_length=128)
    config = transformers.GPT2Config(
        vocab_size=len(fast), n_embd=48, n_layer=3, n_head=2, n_positions=128, initializer_range=0.2
    )
    config.bos_token_id = config.eos_token_id = fast.eos_token_id
    return transformers.GPT2LMHeadModel(config), fast, None


BUILDERS = {"llama": _llama, "qwen2": _qwen2, "gpt2": _gpt2}


def build_checkpoint(arch: str, out: Path) -> Path:
    import torch
    import transformers

    from export.tiny import mark_random

    torch.manual_seed(0)
    model, tokenizer, generation = BUILDERS[arch]()
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    # the template goes into tokenizer_config.json, as in the Llama-3 and Qwen2 hub repositories
    tokenizer.save_pretrained(out, save_jinja_files=False)
    if generation is not None:
        transformers.GenerationConfig(**generation).save_pretrained(out)
    mark_random(out)  # random weights: q8 is judged on logit closeness (export/gates.py), not argmax near-ties
    return out


def export_checkpoint(ckpt: Path, out: Path) -> None:
    """Export exactly as a user would: the CLI on a checkpoint folder, nothing from the catalog."""
    from export.__main__ import main as export_main

    code = export_main([str(ckpt), "--task", "text-generation", "--out", str(out), "--dtype", "fp32", "q8"])
    assert code == 0


def _fingerprint(arch: str) -> str:
    digest = hashlib.sha256(arch.encode() + Path(__file__).read_bytes())
    for folder in ("export", "edgetf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Exported:
    def __init__(self, arch: str, ckpt: Path, bundle: Path):
        self.arch, self.ckpt, self.bundle = arch, ckpt, bundle
        self.manifest = json.loads((bundle / "edgetf.json").read_text())
        self.pipe = edgetf.pipeline("text-generation", bundle, dtype="fp32")
        self._ref: Any = None

    @property
    def ref(self) -> Any:
        if self._ref is None:
            import transformers

            self._ref = transformers.pipeline("text-generation", model=str(self.ckpt), device="cpu")
        return self._ref


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    keep = os.environ.get("EDGETF_TEST_MODELS")
    root = (Path(keep) if keep else tmp_path_factory.mktemp("models")) / "decoders"
    built = {}
    for arch in ARCHS:
        ckpt, bundle = root / "checkpoints" / arch, root / arch
        stamp = root / f"{arch}.fingerprint"
        if not (stamp.is_file() and stamp.read_text() == _fingerprint(arch) and bundle.is_dir()):
            for path in (ckpt, bundle):
                shutil.rmtree(path, ignore_errors=True)
            build_checkpoint(arch, ckpt)
            export_checkpoint(ckpt, bundle)
            stamp.write_text(_fingerprint(arch))
        built[arch] = Exported(arch, ckpt, bundle)
    return built


def _ids(records: list[dict[str, Any]]) -> list[list[int]]:
    return [[int(t) for t in r["generated_token_ids"]] for r in records]


# -- export report --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_export_verifies_fp32_exactly_and_q8_by_agreement(models, arch):
    report = models[arch].manifest["dtypes"]
    fp32, q8 = report["fp32"]["parity"], report["q8"]["parity"]
    assert report["fp32"]["passed"] and fp32["max_diff"] <= 1e-4 and fp32["exact_match"] == 1.0
    # random weights: q8 is judged on teacher-forced top-1 agreement with fp32 (0.9 is the gate)
    assert q8["agreement"] >= 0.9, q8
    print(f"{arch}: fp32 max_diff={fp32['max_diff']:.2e} q8 agreement={q8['agreement']:.3f} passed={q8['passed']}")


@pytest.mark.parametrize("arch", ("llama", "qwen2"))
def test_q8_quantizes_projections_and_head_and_keeps_rotary_float(models, arch):
    import onnx

    bundle = models[arch].bundle
    graph = onnx.load(str(bundle / "onnx/model_quantized.onnx"), load_external_data=False).graph
    integer = [n.name for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(integer) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer + the LM head
    assert any(name.startswith("/lm_head/") for name in integer)
    # the fused decoder graph (export/decoder_graph.py) rotates q and k with RotaryEmbedding, in float
    assert sum(n.op_type == "RotaryEmbedding" for n in graph.node) == 2 * 2
    assert sum(n.op_type == "GroupQueryAttention" for n in graph.node) == 2
    tied = models[arch].manifest["dtypes"]["q8"]["recipe"]["model"]["untied_transposed_weights"]
    assert tied == (1 if arch == "qwen2" else 0)  # Qwen2's head is the embedding, transposed in the graph


# -- tokens vs transformers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("options", [GREEDY, BEAM, MIXED], ids=["greedy", "beam", "mixed"])
def test_tokens_and_texts_match_reference_pipeline(models, arch, options):
    m = models[arch]
    for prompt in PROMPTS:
        assert _ids(m.pipe(prompt, return_tensors=True, **options)) == _ids(
            m.ref(prompt, return_tensors=True, **options)
        ), prompt
        assert m.pipe(prompt, **options) == m.ref(prompt, **options), prompt


def test_llama_prompt_keeps_the_bos_its_tokenizer_adds(models):
    m = models["llama"]
    bos = m.pipe.tokenizer.token_id("bos_token")
    out = m.pipe(PROMPTS[0], return_tensors=True, **GREEDY)[0]["generated_token_ids"]
    assert out[0] == bos and out == _ids(m.ref(PROMPTS[0], return_tensors=True, **GREEDY))[0]
    no_bos = m.pipe(PROMPTS[0], return_tensors=True, add_special_tokens=False, **GREEDY)[0]["generated_token_ids"]
    assert no_bos[0] != bos


@pytest.mark.parametrize("arch", ("llama", "qwen2"))
def test_left_padded_batch_matches_generate(models, arch):
    """Rotary positions of left-padded rows come from the attention mask, as in transformers."""
    import torch
    import transformers

    from edgetf.generation import CausalLM, generate

    m = models[arch]
    tok = transformers.AutoTokenizer.from_pretrained(m.ckpt, padding_side="left")
    tok.pad_token = tok.pad_token or tok.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(m.ckpt).eval()
    enc = tok(PROMPTS[:3], return_tensors="pt", padding=True, return_token_type_ids=False)
    assert int(enc["attention_mask"].sum()) < enc["attention_mask"].numel()  # some rows are padded
    lm = CausalLM(m.pipe.session(), m.pipe.bundle.config)
    for options in (GREEDY, BEAM):
        with torch.no_grad():
            want = model.generate(**enc, pad_token_id=tok.pad_token_id, **options).numpy()
        cfg = m.pipe.model_generation.copy()
        cfg.update(pad_token_id=tok.pad_token_id, **options)
        got = generate(lm, enc["input_ids"].numpy(), cfg, attention_mask=enc["attention_mask"].numpy())
        np.testing.assert_array_equal(got.sequences, want)
    assert m.pipe(PROMPTS, batch_size=4, **GREEDY) == m.pipe(PROMPTS, **GREEDY)


@pytest.mark.parametrize("arch", ("llama", "qwen2"))
def test_eos_token_id_list_stops_at_any_of_them(models, arch):
    m = models[arch]
    assert isinstance(m.pipe.model_generation.eos_token_id, list)
    free = m.pipe(PROMPTS[0], return_tensors=True, **GREEDY)[0]["generated_token_ids"]
    prompt_len = len(m.pipe.tokenizer.encode(PROMPTS[0]).ids)
    stop = [int(m.pipe.model_generation.eos_ids[0]), free[prompt_len + 3]]  # the 4th new token ends it
    got = m.pipe(PROMPTS[0], return_tensors=True, eos_token_id=stop, **GREEDY)
    assert _ids(got) == _ids(m.ref(PROMPTS[0], return_tensors=True, eos_token_id=stop, **GREEDY))
    assert len(got[0]["generated_token_ids"]) <= prompt_len + 4


@pytest.mark.parametrize("arch", ("llama", "qwen2"))
def test_sampling_processed_scores_match_reference_step_by_step(models, arch):
    """The settings the reference pipeline samples with (the bundle's generation_config.json under the
    pipeline's defaults: Qwen2 top_k 20, top_p 0.8, repetition_penalty 1.05) give the processed logits
    transformers samples from, at every step."""
    import torch
    import transformers

    from edgetf.generation import CausalLM, build_processors
    from edgetf.generation.search import prepare_lengths

    m = models[arch]
    tok = transformers.AutoTokenizer.from_pretrained(m.ckpt)
    model = transformers.AutoModelForCausalLM.from_pretrained(m.ckpt).eval()
    for extra in ({"max_new_tokens": 8}, {"max_new_tokens": 8, "min_p": 0.05, "no_repeat_ngram_size": 2}):
        enc = tok("The quick brown fox", return_tensors="pt", return_token_type_ids=False)
        torch.manual_seed(0)
        with torch.no_grad():
            ref = model.generate(
                **enc,
                generation_config=m.ref.generation_config,  # the pipeline's (its temperature 0.7 wins over Llama's)
                output_scores=True,
                return_dict_in_generate=True,
                **extra,
            )
        seq = ref.sequences.numpy()
        cfg = m.pipe.resolve(extra)
        keys = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "eos_token_id")
        assert {k: getattr(cfg, k) for k in keys} == {k: getattr(m.ref.generation_config, k) for k in keys}
        prompt_len = enc["input_ids"].shape[1]
        cfg = prepare_lengths(cfg, prompt_len)
        processors = build_processors(cfg, prompt_len)
        lm = CausalLM(m.pipe.session(), m.pipe.bundle.config)
        logits = lm.prefill(seq[:, :prompt_len], np.ones((1, prompt_len), dtype=np.int64))
        for step, want in enumerate(ref.scores):
            length = prompt_len + step
            got, want = processors(seq[:, :length], logits), want.numpy()
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], atol=1e-4, rtol=0)
            if length < seq.shape[1] - 1:
                logits = lm.step(seq[:, length : length + 1], np.ones((1, length + 1), dtype=np.int64))


@pytest.mark.parametrize("arch", ("llama", "qwen2"))
def test_seeded_sampling_is_reproducible(chat_models, arch):
    pipe = chat_models[arch].pipe
    a = pipe(CHATS[1], max_new_tokens=10, seed=3, num_return_sequences=2)
    assert a == pipe(CHATS[1], max_new_tokens=10, seed=3, num_return_sequences=2)
    assert a != pipe(CHATS[1], max_new_tokens=10, seed=4, num_return_sequences=2) and len(a) == 2


# -- chat input -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_models(models):
    """The chat template travels into the bundle (optimum re-saves the tokenizer, which writes it to
    chat_template.jinja; export copies that file and lists it in the manifest)."""
    return models


def test_export_keeps_the_chat_template_and_verifies_chats(models):
    for arch in CHAT_ARCHS:
        bundle = models[arch].bundle
        assert (bundle / "chat_template.jinja").is_file() or "chat_template" in json.loads(
            (bundle / "tokenizer_config.json").read_text()
        )
        if (bundle / "chat_template.jinja").is_file():
            assert "chat_template.jinja" in models[arch].manifest["files"]  # checksummed like the rest
        assert models[arch].manifest["dtypes"]["fp32"]["parity"].get("chat_inputs") == 2


@pytest.mark.parametrize("arch", CHAT_ARCHS)
@pytest.mark.parametrize(
    "options",
    [GREEDY, {**GREEDY, "return_full_text": False}, BEAM, {**GREEDY, "continue_final_message": False}],
    ids=["greedy", "new-text", "beam", "no-continue"],
)
def test_chat_matches_reference_pipeline(chat_models, arch, options):
    m = chat_models[arch]
    for chat in CHATS:
        got = m.pipe(chat, **options)
        assert got == m.ref(chat, **options), chat
    full = m.pipe(CHATS[0], **GREEDY)[0]["generated_text"]
    assert full[:2] == CHATS[0] and full[2]["role"] == "assistant"
    assert m.pipe(CHATS, **GREEDY) == m.ref(CHATS, **GREEDY)  # a list of chats: one list of records each
    assert _ids(m.pipe(CHATS[0], return_tensors=True, **GREEDY)) == _ids(m.ref(CHATS[0], return_tensors=True, **GREEDY))


@pytest.mark.parametrize("arch", CHAT_ARCHS)
def test_chat_stream_yields_the_reply(chat_models, arch):
    pipe = chat_models[arch].pipe
    reply = pipe(CHATS[0], return_full_text=False, **GREEDY)[0]["generated_text"]
    assert "".join(pipe.stream(CHATS[0], **GREEDY)) == reply


@pytest.mark.parametrize(
    "value,match",
    [
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": 3, "content": "x"}], "role"),
        ([[{"role": "user", "content": "x"}], "text"], "chat"),
        ([[]], "non-empty"),
    ],
)
def test_bad_chats(chat_models, value, match):
    with pytest.raises(InvalidInputError, match=match):
        chat_models["llama"].pipe(value, **GREEDY)


def test_chat_without_a_template_is_refused_clearly(models):
    with pytest.raises(InvalidInputError, match="chat template"):
        models["gpt2"].pipe(CHATS[0], **GREEDY)


# -- the template renderer against transformers' apply_chat_template --------------------------------------------
INDENTED_TEMPLATE = """{% for message in messages %}
    {% if message['role'] == 'system' %}
<<SYS>>{{ message['content'] }}<</SYS>>
    {% elif message['role'] == 'assistant' %}
{% generation %}{{ message['content'] | tojson }}{% endgeneration %}
    {% else %}
[{{ message['role'] | upper }}] {{ message['content'] }}{{ eos_token }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}ASSISTANT ({{ strftime_now('%Y') }}):{% endif %}"""
ALTERNATING_TEMPLATE = (
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ message['content'] }}{% endfor %}"
)


@pytest.mark.parametrize("template", [LLAMA3_TEMPLATE, QWEN2_TEMPLATE, INDENTED_TEMPLATE], ids=["llama3", "qwen2", "x"])
@pytest.mark.parametrize("mode", ["generation-prompt", "continue", "plain"])
def test_rendering_equals_apply_chat_template(models, template, mode):
    import transformers

    from edgetf.text.chat import Chat, ChatTemplate, special_tokens_map

    tok = transformers.AutoTokenizer.from_pretrained(models["llama"].ckpt)
    pipe = models["llama"].pipe
    renderer = ChatTemplate(template, special_tokens_map(pipe.tokenizer.config, pipe.tokenizer.special_tokens))
    chat = [
        {"role": "system", "content": "  Be brief.  "},
        {"role": "user", "content": 'Say "hi" <b>'},
        {"role": "assistant", "content": "Hi 😀 there"},
    ]
    flags = {
        "generation-prompt": {"add_generation_prompt": True, "continue_final_message": False},
        "continue": {"add_generation_prompt": False, "continue_final_message": True},
        "plain": {"add_generation_prompt": False, "continue_final_message": False},
    }[mode]
    want = tok.apply_chat_template(chat, chat_template=template, tokenize=False, **flags)
    assert renderer.render(Chat.of(chat), **flags) == want


def test_template_errors_and_sources():
    from edgetf.errors import BundleError
    from edgetf.text.chat import Chat, ChatTemplate, template_source

    chat = Chat.of([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(InvalidInputError, match="roles must alternate"):
        ChatTemplate(ALTERNATING_TEMPLATE).render(chat, add_generation_prompt=False)
    with pytest.raises(BundleError, match="does not parse"):
        ChatTemplate("{% for m in messages %}")
    named = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
    assert template_source(named) == "D" and template_source(named, "F") == "F"
    assert template_source({}) is None
    with pytest.raises(BundleError, match="default"):
        template_source({"chat_template": [{"name": "tool_use", "template": "T"}]})
