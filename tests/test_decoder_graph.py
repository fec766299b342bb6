"""The fused decoder graphs (export/decoder_graph.py): what the build writes, that they compute what
optimum's traced graph computes (logits and presents, left-padded batch, empty and non-empty past) for
GPT-2, Llama (grouped-query, explicit head_dim, Llama 3 rope scaling) and Qwen2 (biases, tied head), and
which checkpoints keep optimum's graph. Token parity with transformers: tests/test_text_generation.py and
tests/test_decoders.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.decoder_graph import fusable, fuse_bundle, gpt2_fusable, write_fused_decoder  # noqa: E402


@pytest.fixture(scope="module")
def built(tiny):
    return tiny.get("gpt2")


@pytest.fixture(scope="module")
def config(built):
    return json.loads((built.bundle / "config.json").read_text())


def test_build_writes_the_fused_graph(built, config):
    assert built.manifest["extra"]["decoder_graph"]["fused"] is True
    graph = onnx.load(str(built.bundle / "onnx/model.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    layers = config["n_layer"]
    assert ops.count("GroupQueryAttention") == layers and ops.count("FastGelu") == layers
    assert "Split" not in ops  # attention takes c_attn's packed q/k/v
    assert ops.count("Shape") == 3 and len(ops) <= 16 * layers + 30  # shape arithmetic once per step, not per layer
    # the quantization ladder's patterns still find the FFN projections
    assert sum(n.name.endswith("/mlp/c_proj/MatMul") for n in graph.node) == layers


def _feeds(session, ids, mask, past):
    positions = np.where(mask == 0, 1, np.cumsum(mask, -1) - 1)[:, -ids.shape[1] :]
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **past}


def _compare_with_optimum(checkpoint, fused_path, vocab, tmp_path):
    """optimum's export of ``checkpoint`` against the fused graph: every output, prefill + three steps of a
    left-padded batch of two."""
    from optimum.exporters.onnx import main_export

    main_export(str(checkpoint), output=str(tmp_path), task="text-generation-with-past", do_validation=False)
    traced = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    fused = ort.InferenceSession(str(fused_path), providers=["CPUExecutionProvider"])
    assert {i.name for i in fused.get_inputs()} == {i.name for i in traced.get_inputs()}
    assert [o.name for o in fused.get_outputs()] == [o.name for o in traced.get_outputs()]
    names = [o.name for o in traced.get_outputs()]
    past_inputs = [i for i in traced.get_inputs() if i.name.startswith("past_key_values.")]
    assert [i.shape for i in past_inputs] == [
        i.shape for name in [p.name for p in past_inputs] for i in fused.get_inputs() if i.name == name
    ]
    ids = np.random.default_rng(0).integers(3, vocab, (2, 6))
    mask = np.ones((2, 6), np.int64)
    mask[1, :2] = 0  # left padding
    past = {p.name: np.zeros((2, p.shape[1], 0, p.shape[3]), np.float32) for p in past_inputs}
    a = traced.run(names, _feeds(traced, ids, mask, past))
    b = fused.run(names, {**_feeds(fused, ids, mask, past), "logits_to_keep": np.array([0])})  # every position
    assert fused.run(["logits"], _feeds(fused, ids, mask, past))[0].shape[1] == 1  # by default the last only
    valid = mask.astype(bool)
    np.testing.assert_allclose(b[0][valid], a[0][valid], atol=1e-4)
    for _ in range(3):
        for x, y in zip(a[1:], b[1:]):  # presents (padded positions hold values nobody attends to)
            np.testing.assert_allclose(y[:, :, -valid.sum(1).min() :], x[:, :, -valid.sum(1).min() :], atol=1e-4)
        nxt = a[0][:, -1].argmax(-1)[:, None]
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        a = traced.run(names, _feeds(traced, nxt, mask, {p.name: v for p, v in zip(past_inputs, a[1:])}))
        b = fused.run(names, _feeds(fused, nxt, mask, {p.name: v for p, v in zip(past_inputs, b[1:])}))
        np.testing.assert_allclose(b[0], a[0], atol=1e-4)


def test_fused_gpt2_matches_optimums_graph(built, config, tmp_path):
    _compare_with_optimum(built.checkpoint, built.bundle / "onnx/model.onnx", config["vocab_size"], tmp_path)


def _tiny_checkpoint(arch, folder):
    import torch
    import transformers

    sizes = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}
    sizes.update(num_key_value_heads=2, vocab_size=120, max_position_embeddings=64)
    if arch == "llama":  # explicit head_dim, Llama 3 rope scaling, untied head
        config = transformers.LlamaConfig(
            **sizes,
            head_dim=32,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        )
    else:  # q/k/v biases, tied head
        config = transformers.Qwen2Config(**sizes, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias"):
                tensor.normal_(0, 0.1)  # random-init biases are zero: make them count
    model.save_pretrained(folder)
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_llama_style_graphs_match_optimums(arch, tmp_path):
    config = _tiny_checkpoint(arch, tmp_path / "ckpt")
    fused_path = tmp_path / "fused.onnx"
    assert write_fused_decoder(tmp_path / "ckpt", config, fused_path) is None
    graph = onnx.load(str(fused_path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("GroupQueryAttention") == 2 and ops.count("RotaryEmbedding") == 4
    assert ("lm_head.weight" in {i.name for i in graph.initializer}) == (arch == "llama")  # tied: Transpose
    _compare_with_optimum(tmp_path / "ckpt", fused_path, config["vocab_size"], tmp_path / "optimum")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"activation_function": "relu"}, "activation_function 'relu'"),
        ({"scale_attn_weights": False}, "scale_attn_weights"),
        ({"model_type": "mistral"}, "not gpt2"),
    ],
)
def test_unfusable_configs_keep_optimums_graph(built, config, tmp_path, change, why):
    config = {**config, **change}
    reason = gpt2_fusable(config)
    assert reason is not None and why in reason
    dst = tmp_path / "model.onnx"
    assert write_fused_decoder(built.checkpoint, config, dst) == reason and not dst.exists()


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"model_type": "qwen2", "use_sliding_window": True}, "sliding-window"),
        ({"model_type": "llama", "mlp_bias": True}, "MLP biases"),
    ],
)
def test_unfusable_llama_style_configs(config, why):
    reason = fusable(config)
    assert reason is not None and why in reason


def test_other_families_are_left_alone(tmp_path):
    assert fuse_bundle("mistral", tmp_path, tmp_path) is None
