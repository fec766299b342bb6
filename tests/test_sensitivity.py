"""The recipe ladder's sensitivity measure (export/quantize.py): MatMuls inside If subgraphs (merged
decoders) are measured and kept float like top-level ones, and the ladder gets calibration feeds even
when fp32 is not among the requested dtypes."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export import catalog, quantize
from export.build import export_entry


def merged_like_model(path):
    """x -> MatMul(W1) -> If(cond) { MatMul(W2) named alike in both branches, the same top-level weight }."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "W1")
    w2 = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "W2")

    def branch(tag):
        node = helper.make_node("MatMul", ["h", "W2"], [f"y_{tag}"], name="/layer/MatMul")
        out = helper.make_tensor_value_info(f"y_{tag}", TensorProto.FLOAT, None)
        return helper.make_graph([node], f"branch_{tag}", [], [out])

    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="/top/MatMul"),
        helper.make_node("If", ["cond"], ["y"], name="/If", then_branch=branch("a"), else_branch=branch("b")),
    ]
    graph = helper.make_graph(
        nodes,
        "merged",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def feeds():
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(1, 4, 8)).astype(np.float32), "cond": np.array(c)} for c in (True, False)]


def test_switch_model_reaches_into_subgraphs_and_its_float_setting_is_the_original(tmp_path):
    src = merged_like_model(tmp_path / "merged.onnx")
    names = quantize.switch_model(src, tmp_path / "switch.onnx", "QInt8")
    assert names == ["/top/MatMul", "/layer/MatMul"]  # one switch for the node both branches hold
    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    switched = ort.InferenceSession(str(tmp_path / "switch.onnx"), providers=["CPUExecutionProvider"])
    for feed in feeds():
        want = original.run(None, feed)[0]
        got_float = switched.run(None, {**feed, quantize.SWITCH: np.zeros(2, np.float32)})[0]
        got_quant = switched.run(None, {**feed, quantize.SWITCH: np.ones(2, np.float32)})[0]
        np.testing.assert_allclose(got_float, want, rtol=1e-6, atol=1e-6)
        assert 0 < np.abs(got_quant - want).max() < 0.1 * np.abs(want).max()  # 8-bit error: small, not zero

    rows = quantize.sensitivity(src, feeds())
    assert sorted(r["node"] for r in rows) == ["/layer/MatMul", "/top/MatMul"]
    assert all("alone" in r for r in rows)


def test_sensitive_level_keeps_the_subgraph_node_float_in_both_branches(tmp_path):
    src = merged_like_model(tmp_path / "merged.onnx")
    ranking = quantize.sensitivity(src, feeds())
    recipe = quantize.quantize_q8(src, tmp_path / "q.onnx", level="sensitive-1", calibration=feeds())
    assert [r["node"] for r in recipe["float_nodes"]] == [ranking[0]["node"]] and recipe["subgraphs"] is True

    def ops(graph, found):
        for node in graph.node:
            found.append((node.name, node.op_type))
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    ops(attr.g, found)
        return found

    found = ops(onnx.load(str(tmp_path / "q.onnx")).graph, [])
    float_matmuls = [name for name, op in found if op == "MatMul"]
    assert float_matmuls.count(ranking[0]["node"]) == (2 if ranking[0]["node"] == "/layer/MatMul" else 1)
    assert sum(op == "MatMulInteger" for _, op in found) == (1 if ranking[0]["node"] == "/layer/MatMul" else 2)


def test_ladder_gets_calibration_feeds_without_fp32_among_the_dtypes(tmp_path, monkeypatch):
    seen = []
    real = quantize.ladder

    def spy(calibration, *more):
        seen.append(sorted(calibration))
        return real(calibration, *more)

    monkeypatch.setattr(quantize, "ladder", spy)
    entry = replace(catalog.get("distilbert-sst2"), dtypes=("q8",))
    result = export_entry(entry, tmp_path, tiny_model=True, log=lambda _m: None)
    assert result.status == "ok", result.detail
    assert seen == [["model"]]  # the fp32 calibration pass recorded the model's feeds before the ladder
    assert result.dtypes["q8"]["parity"]["feeds_compared"] >= 1
