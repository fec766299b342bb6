"""Seq2SeqDecoder's one-row encoder side: beam search on one input feeds the cross-attention cache once
and lets the graph broadcast it over the beams, after checking on the first step that the graph gives
what the tiled cache gives; a graph that ties the encoder side to the decoder's batch keeps the tiled
cache. Hand-built merged-decoder-shaped graphs (no model export), so both outcomes are exercised."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgetf.errors import InferenceError
from edgetf.generation import GenerationConfig, Seq2SeqDecoder, generate
from edgetf.session import Session

VOCAB, DIM, ENC_LEN = 7, 4, 6


def _decoder_graph(path, *, batch_bound: bool) -> Session:
    """logits = embedding(input_ids) + a score read from the encoder key cache. The encoder key present
    is the encoder states on the first step (use_cache_branch false) and the past afterwards, as in a
    merged decoder. batch_bound: the score reshapes the encoder key by the decoder's batch (one encoder
    row then mixes data across rows); else a broadcasting MatMul, as attention does."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["b", "s"]),
        helper.make_tensor_value_info("encoder_hidden_states", f, ["b", ENC_LEN, DIM]),
        helper.make_tensor_value_info("past_key_values.0.decoder.key", f, ["b", 1, "p", DIM]),
        helper.make_tensor_value_info("past_key_values.0.encoder.key", f, ["b", 1, ENC_LEN, DIM]),
        helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", f, None),
        helper.make_tensor_value_info("present.0.decoder.key", f, None),
        helper.make_tensor_value_info("present.0.encoder.key", f, None),
    ]
    rng = np.random.default_rng(0)
    inits = [
        helper.make_tensor("table", f, [VOCAB, VOCAB], rng.normal(size=VOCAB * VOCAB).tolist()),
        helper.make_tensor("table_q", f, [VOCAB, DIM], rng.normal(size=VOCAB * DIM).tolist()),
        helper.make_tensor("minus_one", i64, [1], [-1]),
        helper.make_tensor("axes1", i64, [1], [1]),
        helper.make_tensor("axes_last", i64, [1], [-1]),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["encoder_hidden_states", "axes1"], ["states4"]),
        helper.make_node("Where", ["use_cache_branch", "past_key_values.0.encoder.key", "states4"], ["enc_key"]),
        helper.make_node("Identity", ["enc_key"], ["present.0.encoder.key"]),
        helper.make_node("Identity", ["past_key_values.0.decoder.key"], ["present.0.decoder.key"]),
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),  # (b, s, V)
    ]
    if batch_bound:
        nodes += [
            helper.make_node("Shape", ["input_ids"], ["ids_shape"], start=0, end=1),
            helper.make_node("Concat", ["ids_shape", "minus_one"], ["by_batch"], axis=0),
            helper.make_node("Reshape", ["enc_key", "by_batch"], ["flat"]),  # (b, ENC_LEN * DIM)
            helper.make_node("ReduceSum", ["flat", "axes_last"], ["score2"], keepdims=1),  # (b, 1)
            helper.make_node("Unsqueeze", ["score2", "axes_last"], ["score"]),  # (b, 1, 1)
        ]
    else:
        nodes += [
            helper.make_node("Gather", ["table_q", "input_ids"], ["q3"]),  # (b, s, D)
            helper.make_node("Unsqueeze", ["q3", "axes1"], ["q"]),  # (b, 1, s, D)
            helper.make_node("Transpose", ["enc_key"], ["key_t"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["q", "key_t"], ["att"]),  # (b, 1, s, ENC_LEN): broadcasts over b
            helper.make_node("ReduceSum", ["att", "axes_last"], ["att_sum"], keepdims=1),  # (b, 1, s, 1)
            helper.make_node("Squeeze", ["att_sum", "axes1"], ["score"]),  # (b, s, 1)
        ]
    nodes.append(helper.make_node("Add", ["emb", "score"], ["logits"]))
    graph = helper.make_graph(nodes, "decoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Session(path)


def _rows(value) -> int:
    """Rows of a cached array or onnxruntime value (io_binding keeps the presents as OrtValues)."""
    return int(value.shape()[0] if callable(value.shape) else value.shape[0])


def _beam_search(session: Session, states: np.ndarray, share: bool, io_binding: bool = False, encoder_cache=None):
    config = GenerationConfig(num_beams=3, max_new_tokens=5, decoder_start_token_id=0)
    decoder = Seq2SeqDecoder(
        session,
        states,
        config={"num_attention_heads": 1, "d_model": DIM},
        share_encoder_cache=share,
        io_binding=io_binding,
    )
    out = generate(decoder, np.zeros((states.shape[0], 1), dtype=np.int64), config)
    return decoder, out


@pytest.mark.parametrize("io_binding", [False, True])
@pytest.mark.parametrize("batch_bound", [False, True])
def test_one_input_beams_broadcast_the_encoder_side_only_where_the_graph_allows(tmp_path, batch_bound, io_binding):
    states = np.random.default_rng(1).normal(size=(1, ENC_LEN, DIM)).astype(np.float32)
    session = _decoder_graph(tmp_path / "decoder.onnx", batch_bound=batch_bound)
    tiled, want = _beam_search(session, states, share=False)
    assert tiled.encoder_rows == 3
    for _ in range(2):  # the first call checks the broadcast step; the second relies on what it found
        shared, got = _beam_search(session, states, share=True, io_binding=io_binding)
        np.testing.assert_array_equal(got.sequences, want.sequences)
        np.testing.assert_allclose(
            got.sequences_scores, want.sequences_scores, rtol=1e-6
        )  # MatMul kernels may differ by an ulp
        assert shared.encoder_rows == (3 if batch_bound else 1)
        assert _rows(shared.cache["past_key_values.0.encoder.key"]) == shared.encoder_rows
        assert _rows(shared.cache["past_key_values.0.decoder.key"]) == 3


def test_several_inputs_keep_one_encoder_row_per_beam(tmp_path):
    states = np.random.default_rng(2).normal(size=(2, ENC_LEN, DIM)).astype(np.float32)
    session = _decoder_graph(tmp_path / "decoder.onnx", batch_bound=False)
    _, want = _beam_search(session, states, share=False)
    shared, got = _beam_search(session, states, share=True)
    np.testing.assert_array_equal(got.sequences, want.sequences)
    np.testing.assert_allclose(
        got.sequences_scores, want.sequences_scores, rtol=1e-6
    )  # MatMul kernels may differ by an ulp
    assert shared.encoder_rows == 6
    np.testing.assert_array_equal(shared.encoder_hidden_states, np.repeat(states, 3, axis=0))


@pytest.mark.parametrize("wrong", [False, True])
def test_prefill_on_a_given_encoder_cache_gives_the_first_step_branch(tmp_path, wrong):
    """A decoder given the cross-attention cache of the same encoder states (Whisper: from language
    detection) runs its prompt on it; the first use on a session is checked against the first-step
    branch, so a cache that does not fit (here: zeros) changes nothing."""
    states = np.random.default_rng(3).normal(size=(1, ENC_LEN, DIM)).astype(np.float32)
    session = _decoder_graph(tmp_path / "decoder.onnx", batch_bound=False)
    detector = Seq2SeqDecoder(session, states)
    detector.prefill(np.zeros((1, 1), dtype=np.int64))
    cache = {n: np.zeros_like(v) if wrong else v for n, v in detector.encoder_cache.items()}
    assert list(cache) == ["past_key_values.0.encoder.key"]
    _, want = _beam_search(session, states, share=True)
    for _ in range(2):  # the first call checks the cached prompt pass; the second relies on what it found
        _, got = _beam_search(session, states, share=True, encoder_cache=cache)
        np.testing.assert_array_equal(got.sequences, want.sequences)
        np.testing.assert_allclose(got.sequences_scores, want.sequences_scores, rtol=1e-6)


def test_encoder_cache_must_name_the_cross_attention_inputs(tmp_path):
    states = np.zeros((1, ENC_LEN, DIM), dtype=np.float32)
    session = _decoder_graph(tmp_path / "decoder.onnx", batch_bound=False)
    with pytest.raises(InferenceError, match="encoder_cache must hold exactly the inputs"):
        Seq2SeqDecoder(session, states, encoder_cache={"past_key_values.1.encoder.key": states})
