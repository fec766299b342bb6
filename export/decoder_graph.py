"""Fused decoder graphs for text generation: decoder-only models written with onnxruntime's fused operators.

optimum's export traces PyTorch's attention with dynamic shapes: GPT-2 124M runs about 1,200 nodes per
step (Shape/Gather/Unsqueeze/Concat chains, masks rebuilt every step), a Llama of the same size about
3,400, of which onnxruntime's optimizer folds little. Batch-1 decoding runs every node once per token, so
past the int8 MatMuls the step is bound by node overhead, not memory (benchmarks/bench_generation.py).
This module writes the same models with a handful of nodes per layer:

* GPT-2: ``LayerNormalization``, ``MatMul`` (+ bias), ``com.microsoft.GroupQueryAttention`` with as many
  key/value heads as query heads (fed c_attn's packed q/k/v, causal, no rotary, the key padding as an
  additive ``attention_bias``),
  ``com.microsoft.FastGelu`` (``gelu_new``), residual ``Add``s. ``MultiHeadAttention`` (the first version)
  copies the whole past into a new present every step; ``GroupQueryAttention`` given one buffer as past and
  present writes only the new position (about 2-3x less attention time per step at 64-160 cached positions).
* Llama, Qwen2: ``SimplifiedLayerNormalization`` (RMSNorm), q/k/v/o and SwiGLU ``MatMul``s (Qwen2's q/k/v
  biases), ``com.microsoft.RotaryEmbedding`` fed the graph's ``position_ids`` (left-padded rows keep
  transformers' positions; the cos/sin tables come from the model's own rotary module, so rope scaling
  is whatever the checkpoint says), ``com.microsoft.GroupQueryAttention`` (grouped key/value heads, causal)
  with every row's cache length equal (the batch is left-padded) and the padding as an additive
  ``attention_bias``.

The graphs keep optimum's interface (inputs ``input_ids``, ``attention_mask``, ``position_ids``,
``past_key_values.{i}.key|value`` shaped (batch, kv heads, length, head_dim); outputs ``logits``,
``present.{i}.key|value``) plus one optional input, ``logits_to_keep`` (an initializer that callers may
override, default 1: ``logits`` holds the last position only, which is all generation reads — transformers.js
takes ``logits[:, -1]`` — and a prefill skips the LM head for the rest of the prompt; feed 0 for every
position, as transformers' ``logits_to_keep``). The model metadata ``edgetf.kv_cache: shared`` tells the
runtime that past and present may be one buffer (edgetf.generation.steps); callers feeding a past of the
exact length, as optimum and transformers.js do, get the same results. Also kept: optimum's node names for
the linear layers (the quantization ladder matches them), a tied head as ``MatMul(x, Transpose(embedding))``
(untied for q8 by export/quantize.py), and the file name (``onnx/model.onnx``): bundles stay in the
transformers.js layout, and older bundles run as before (without the metadata: the copying cache).
Configurations the fused operators cannot express (``fusable`` says why) keep optimum's graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgetf.generation.steps import KV_BUFFER_KEY, LOGITS_TO_KEEP

MS = "com.microsoft"


def gpt2_fusable(config: Mapping[str, Any]) -> str | None:
    """None when ``config`` (a GPT-2 config.json) can be written as the fused graph; else why not."""
    if config.get("model_type") != "gpt2":
        return f"model_type {config.get('model_type')!r} is not gpt2"
    if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        return f"activation_function {config.get('activation_function')!r} is not the tanh GELU"
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            return f"{flag} is set"
    if not config.get("scale_attn_weights", True):
        return "scale_attn_weights is off"
    return None


def gpt2_graph(weights: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
    """The fused GPT-2 decoder (an ``onnx.ModelProto``) from a ``GPT2LMHeadModel`` state dict as numpy arrays."""
    import numpy as np
    from onnx import helper, numpy_helper

    layers, heads, hidden = int(config["n_layer"]), int(config["n_head"]), int(config["n_embd"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    vocab = int(config["vocab_size"])
    inits: list[Any] = []
    nodes: list[Any] = []

    def weight(key: str, name: str | None = None) -> str:
        name = name or key
        inits.append(numpy_helper.from_array(np.ascontiguousarray(weights[key], dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> None:
        domain = MS if op in ("GroupQueryAttention", "FastGelu") else ""
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))

    def linear(x: str, prefix: str, key: str) -> str:
        node("MatMul", [x, weight(f"{key}.weight")], [f"{prefix}/MatMul_output_0"], f"{prefix}/MatMul")
        node("Add", [f"{prefix}/MatMul_output_0", weight(f"{key}.bias")], [f"{prefix}/Add_output_0"], f"{prefix}/Add")
        return f"{prefix}/Add_output_0"

    def layer_norm(x: str, prefix: str, key: str) -> str:
        out = f"{prefix}/LayerNormalization_output_0"
        scale, bias = weight(f"{key}.weight"), weight(f"{key}.bias")
        node("LayerNormalization", [x, scale, bias], [out], f"{prefix}/LayerNormalization", axis=-1, epsilon=eps)
        return out

    node("Gather", [weight("transformer.wte.weight"), "input_ids"], ["/wte/Gather_output_0"], "/transformer/wte/Gather")
    pos_table = weight("transformer.wpe.weight")
    node("Gather", [pos_table, "position_ids"], ["/wpe/Gather_output_0"], "/transformer/wpe/Gather")
    node("Add", ["/wte/Gather_output_0", "/wpe/Gather_output_0"], ["/h_in"], "/transformer/Add")
    seqlens, total, attn_bias = attention_inputs(nodes, inits)
    hidden_state = "/h_in"
    for i in range(layers):
        p, k = f"/transformer/h.{i}", f"transformer.h.{i}"
        x = layer_norm(hidden_state, f"{p}/ln_1", f"{k}.ln_1")
        qkv = linear(x, f"{p}/attn/c_attn", f"{k}.attn.c_attn")  # packed q, k, v: no Split
        attn = f"{p}/attn/GroupQueryAttention_output_0"
        past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        node(
            "GroupQueryAttention",
            [qkv, "", "", *past, seqlens, total, "", "", "", attn_bias],
            [attn, f"present.{i}.key", f"present.{i}.value"],
            f"{p}/attn/GroupQueryAttention",
            num_heads=heads,
            kv_num_heads=heads,
        )
        proj = linear(attn, f"{p}/attn/c_proj", f"{k}.attn.c_proj")
        node("Add", [hidden_state, proj], [f"{p}/residual_1"], f"{p}/Add")
        x = layer_norm(f"{p}/residual_1", f"{p}/ln_2", f"{k}.ln_2")
        up = f"{p}/mlp/c_fc/MatMul_output_0"
        node("MatMul", [x, weight(f"{k}.mlp.c_fc.weight")], [up], f"{p}/mlp/c_fc/MatMul")
        act = f"{p}/mlp/act/FastGelu_output_0"
        node("FastGelu", [up, weight(f"{k}.mlp.c_fc.bias")], [act], f"{p}/mlp/act/FastGelu")
        down = linear(act, f"{p}/mlp/c_proj", f"{k}.mlp.c_proj")
        node("Add", [f"{p}/residual_1", down], [f"{p}/residual_2"], f"{p}/Add_1")
        hidden_state = f"{p}/residual_2"
    x = layer_norm(hidden_state, "/transformer/ln_f", "transformer.ln_f")
    node("Transpose", ["transformer.wte.weight"], ["/lm_head/weight_t"], "/lm_head/Transpose", perm=[1, 0])
    node("MatMul", [kept_positions(nodes, x), "/lm_head/weight_t"], ["logits"], "/lm_head/MatMul")

    return decoder_model(nodes, inits, "gpt2_fused_decoder", layers, heads, head_dim, vocab)


def fusable(config: Mapping[str, Any]) -> str | None:
    """None when ``config`` can be written as a fused graph; else why not."""
    if config.get("model_type") in ("llama", "qwen2"):
        return llama_fusable(config)
    return gpt2_fusable(config)


def write_fused_decoder(checkpoint: Path, config: Mapping[str, Any], dst: Path) -> str | None:
    """Write the fused graph of ``checkpoint`` over ``dst`` (weights in ``dst``'s ``.onnx_data``).
    Returns None when written, else why the exporter's graph was kept."""
    reason = fusable(config)
    if reason:
        return reason
    import onnx
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    weights = {key: tensor.detach().numpy() for key, tensor in model.state_dict().items()}
    if config["model_type"] == "gpt2":
        graph = gpt2_graph(weights, config)
    else:
        positions = int(config.get("max_position_embeddings") or 2048)
        graph = llama_graph(weights, config, *rotary_tables(model, positions))
    data = dst.with_name(dst.name + "_data")
    if data.exists():
        data.unlink()
    onnx.save(graph, str(dst), save_as_external_data=True, location=data.name, size_threshold=1024)
    return None


def fuse_bundle(model_type: str, checkpoint: Path, bundle: Path) -> dict[str, Any] | None:
    """After optimum's export: replace a GPT-2 bundle's ``onnx/model.onnx`` with the fused graph.
    Returns the manifest record (``{"fused": True, ...}`` or why not), None for other families."""
    if model_type not in ("gpt2", "llama", "qwen2"):
        return None
    import json

    config = json.loads((bundle / "config.json").read_text())
    reason = write_fused_decoder(checkpoint, config, bundle / "onnx" / "model.onnx")
    if reason:
        return {"fused": False, "why": reason}
    attention = "MultiHeadAttention" if model_type == "gpt2" else "GroupQueryAttention"
    return {"fused": True, "attention": attention}


# -- Llama-style decoders (Llama, Qwen2): GroupQueryAttention ------------------------------------------------
def llama_fusable(config: Mapping[str, Any]) -> str | None:
    """None when ``config`` (a Llama or Qwen2 config.json) can be written as the fused graph; else why not."""
    if config.get("model_type") not in ("llama", "qwen2"):
        return f"model_type {config.get('model_type')!r} is not llama or qwen2"
    if config.get("hidden_act", "silu") != "silu":
        return f"hidden_act {config.get('hidden_act')!r} is not silu"
    if config.get("use_sliding_window") or config.get("mlp_bias"):
        return "sliding-window attention or MLP biases"
    return None


def llama_graph(weights: Mapping[str, Any], config: Mapping[str, Any], cos: Any, sin: Any) -> Any:
    """The fused Llama/Qwen2 decoder from a ``*ForCausalLM`` state dict as numpy arrays; ``cos``/``sin``:
    the model's rotary tables (positions x head_dim / 2, scaling applied), as its rotary module computes them."""
    import numpy as np
    from onnx import helper, numpy_helper

    layers, heads = int(config["num_hidden_layers"]), int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    eps = float(config.get("rms_norm_eps", 1e-6))
    vocab = int(config["vocab_size"])
    tied = "lm_head.weight" not in weights or bool(config.get("tie_word_embeddings"))
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, array: Any) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def linear(x: str, prefix: str, key: str) -> str:
        w = const(f"{key}.weight", np.asarray(weights[f"{key}.weight"], np.float32).T)
        out = node("MatMul", [x, w], [f"{prefix}/MatMul_output_0"], f"{prefix}/MatMul")
        if f"{key}.bias" in weights:
            bias = const(f"{key}.bias", np.asarray(weights[f"{key}.bias"], np.float32))
            out = node("Add", [out, bias], [f"{prefix}/Add_output_0"], f"{prefix}/Add")
        return out

    def rms_norm(x: str, prefix: str, key: str) -> str:
        scale = const(f"{key}.weight", np.asarray(weights[f"{key}.weight"], np.float32))
        out = f"{prefix}/SimplifiedLayerNormalization_output_0"
        return node(
            "SimplifiedLayerNormalization",
            [x, scale],
            [out],
            f"{prefix}/SimplifiedLayerNormalization",
            axis=-1,
            epsilon=eps,
        )

    embed = const("model.embed_tokens.weight", np.asarray(weights["model.embed_tokens.weight"], np.float32))
    h = node("Gather", [embed, "input_ids"], ["/model/embed_tokens/Gather_output_0"], "/model/embed_tokens/Gather")
    cos_cache = const("/rotary/cos_cache", np.asarray(cos, np.float32))
    sin_cache = const("/rotary/sin_cache", np.asarray(sin, np.float32))
    seqlens, total, attn_bias = attention_inputs(nodes, inits)

    for i in range(layers):
        p, k = f"/model/layers.{i}", f"model.layers.{i}"
        x = rms_norm(h, f"{p}/input_layernorm", f"{k}.input_layernorm")
        q = linear(x, f"{p}/self_attn/q_proj", f"{k}.self_attn.q_proj")
        kk = linear(x, f"{p}/self_attn/k_proj", f"{k}.self_attn.k_proj")
        v = linear(x, f"{p}/self_attn/v_proj", f"{k}.self_attn.v_proj")
        q = node(
            "RotaryEmbedding",
            [q, "position_ids", cos_cache, sin_cache],
            [f"{p}/self_attn/q_rot"],
            f"{p}/self_attn/q_rotary",
            domain=MS,
            num_heads=heads,
        )
        kk = node(
            "RotaryEmbedding",
            [kk, "position_ids", cos_cache, sin_cache],
            [f"{p}/self_attn/k_rot"],
            f"{p}/self_attn/k_rotary",
            domain=MS,
            num_heads=kv_heads,
        )
        attn = node(
            "GroupQueryAttention",
            [q, kk, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens, total, "", "", "", attn_bias],
            [f"{p}/self_attn/GroupQueryAttention_output_0", f"present.{i}.key", f"present.{i}.value"],
            f"{p}/self_attn/GroupQueryAttention",
            domain=MS,
            num_heads=heads,
            kv_num_heads=kv_heads,
        )
        o = linear(attn, f"{p}/self_attn/o_proj", f"{k}.self_attn.o_proj")
        h_mid = node("Add", [h, o], [f"{p}/residual_1"], f"{p}/Add")
        x = rms_norm(h_mid, f"{p}/post_attention_layernorm", f"{k}.post_attention_layernorm")
        gate = linear(x, f"{p}/mlp/gate_proj", f"{k}.mlp.gate_proj")
        up = linear(x, f"{p}/mlp/up_proj", f"{k}.mlp.up_proj")
        sig = node("Sigmoid", [gate], [f"{p}/mlp/act_fn/Sigmoid_output_0"], f"{p}/mlp/act_fn/Sigmoid")
        act = node("Mul", [gate, sig], [f"{p}/mlp/act_fn/Mul_output_0"], f"{p}/mlp/act_fn/Mul")
        prod = node("Mul", [act, up], [f"{p}/mlp/Mul_output_0"], f"{p}/mlp/Mul")
        down = linear(prod, f"{p}/mlp/down_proj", f"{k}.mlp.down_proj")
        h = node("Add", [h_mid, down], [f"{p}/residual_2"], f"{p}/Add_1")
    x = rms_norm(h, "/model/norm", "model.norm")
    if tied:
        head = node("Transpose", [embed], ["/lm_head/weight_t"], "/lm_head/Transpose", perm=[1, 0])
    else:
        head = const("lm_head.weight", np.asarray(weights["lm_head.weight"], np.float32).T)
    node("MatMul", [kept_positions(nodes, x), head], ["logits"], "/lm_head/MatMul")

    return decoder_model(nodes, inits, "llama_fused_decoder", layers, kv_heads, head_dim, vocab)


def attention_inputs(nodes: list[Any], inits: list[Any]) -> tuple[str, str, str]:
    """GroupQueryAttention's per-step inputs from ``attention_mask``, computed once per step: every row's
    cache length - 1 (``seqlens_k``; the left-padded batch keeps one length), the total length, and the key
    padding as an additive bias (rows, 1, new positions, total positions). With a cache buffer longer than
    the total (past and present one buffer, see edgetf.generation.steps) these still say where the step is."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, array: Any) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    const("/one_i32", np.array(1, np.int32))
    const("/zero_i32", np.array(0, np.int32))
    m32 = node("Cast", ["attention_mask"], ["/mask/i32"], "/mask/Cast", to=TensorProto.INT32)
    ones = node(
        "Add", [node("Mul", [m32, "/zero_i32"], ["/mask/zero"], "/mask/Mul"), "/one_i32"], ["/mask/ones"], "/mask/Add"
    )
    total_rows = node(
        "ReduceSum", [ones, const("/axis1", np.array([1], np.int64))], ["/mask/total"], "/mask/ReduceSum", keepdims=0
    )
    seqlens = node("Sub", [total_rows, "/one_i32"], ["/mask/seqlens_k"], "/mask/Sub")
    shape = node("Shape", ["attention_mask"], ["/mask/shape"], "/mask/Shape", start=1, end=2)
    total = node(
        "Squeeze",
        [node("Cast", [shape], ["/mask/total_i32"], "/mask/CastTotal", to=TensorProto.INT32)],
        ["/mask/total_sequence_length"],
        "/mask/Squeeze",
    )
    maskf = node("Cast", ["attention_mask"], ["/mask/f32"], "/mask/CastF", to=TensorProto.FLOAT)
    neg = const("/mask/min", np.array(np.finfo(np.float32).min, np.float32))
    onef = const("/mask/onef", np.array(1.0, np.float32))
    padding = node(
        "Mul", [node("Sub", [onef, maskf], ["/mask/pad"], "/mask/SubF"), neg], ["/mask/bias2d"], "/mask/MulF"
    )
    bias4 = node("Unsqueeze", [padding, const("/axes12", np.array([1, 2], np.int64))], ["/mask/bias4"], "/mask/Unsq")
    rows_len = node("Shape", ["input_ids"], ["/ids/shape"], "/ids/Shape")  # (rows, new)
    full = node(
        "Concat",
        [
            node(
                "Slice",
                [rows_len, const("/s0", np.array([0], np.int64)), const("/s1", np.array([1], np.int64))],
                ["/ids/rows"],
                "/ids/SliceRows",
            ),
            const("/one_i64", np.array([1], np.int64)),
            node("Slice", [rows_len, "/s1", const("/s2", np.array([2], np.int64))], ["/ids/new"], "/ids/SliceNew"),
            node("Shape", ["attention_mask"], ["/mask/total_i64"], "/mask/ShapeTotal", start=1, end=2),
        ],
        ["/mask/bias_shape"],
        "/mask/Concat",
        axis=0,
    )
    attn_bias = node("Expand", [bias4, full], ["/mask/attention_bias"], "/mask/Expand")
    return seqlens, total, attn_bias


def kept_positions(nodes: list[Any], hidden: str) -> str:
    """The last ``logits_to_keep`` positions of ``hidden`` (all of them for 0, as transformers'
    ``logits_to_keep``), so that the LM head runs on the positions whose logits are wanted: a prefill of a
    long prompt needs only the last. ``logits_to_keep`` is an optional input (an initializer, default 1,
    that a caller may feed: edgetf's teacher forcing feeds 0); see :func:`decoder_model`."""
    from onnx import helper

    starts = "/lm_head/keep_start"
    nodes.append(helper.make_node("Neg", [LOGITS_TO_KEEP], [starts], name="/lm_head/Neg"))
    out = "/lm_head/kept_positions"
    ends, axes = "/lm_head/keep_end", "/lm_head/keep_axis"
    nodes.append(helper.make_node("Constant", [], [ends], name="/lm_head/End", value_ints=[2**62]))
    nodes.append(helper.make_node("Constant", [], [axes], name="/lm_head/Axis", value_ints=[1]))
    nodes.append(helper.make_node("Slice", [hidden, starts, ends, axes], [out], name="/lm_head/Slice"))
    return out


def decoder_model(
    nodes: list[Any], inits: list[Any], name: str, layers: int, kv_heads: int, head_dim: int, vocab: int
) -> Any:
    """The model around a fused decoder's nodes, with optimum's decoder-with-past interface: input_ids,
    attention_mask, position_ids and past_key_values.{i}.key|value in; logits and present.{i}.key|value out."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    past_shape = ["batch_size", kv_heads, "past_sequence_length", head_dim]
    present_shape = ["batch_size", kv_heads, "past_sequence_length + sequence_length", head_dim]
    inputs = [value("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])]
    inputs.append(value("attention_mask", TensorProto.INT64, ["batch_size", "past_sequence_length + sequence_length"]))
    inputs.append(value("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]))
    # optional input with a default (an initializer of the same name): last position's logits only
    inputs.append(value(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
    keep = helper.make_tensor(LOGITS_TO_KEEP, TensorProto.INT64, [1], [1])
    outputs = [value("logits", TensorProto.FLOAT, ["batch_size", "logits_length", vocab])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(value(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, past_shape))
            outputs.append(value(f"present.{i}.{kind}", TensorProto.FLOAT, present_shape))
    graph = helper.make_graph(nodes, name, inputs, outputs, [*inits, keep])
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgetf.export.decoder_graph")
    # GroupQueryAttention takes past and present as one buffer (edgetf.generation.steps reads this)
    helper.set_model_props(model, {KV_BUFFER_KEY: "shared"})
    return model


def rotary_tables(model: Any, positions: int) -> tuple[Any, Any]:
    """(positions, head_dim / 2) cos and sin tables from the model's own rotary module (any rope scaling)."""
    import torch

    rotary = model.model.rotary_emb
    ids = torch.arange(positions)[None]
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1, dtype=torch.float32), ids)
    half = cos.shape[-1] // 2
    return cos[0, :, :half].numpy(), sin[0, :, :half].numpy()
