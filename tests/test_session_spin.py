"""SessionOptions.spin_duration_us: the bounded spin window reaches onnxruntime, and bad values are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgetf
from edgetf.session import Session

KEYS = ("session.intra_op.spin_duration_us", "session.inter_op.spin_duration_us")


def config(options: edgetf.SessionOptions, key: str) -> str | None:
    so = options.to_ort()
    try:
        return so.get_session_config_entry(key)
    except Exception:  # onnxruntime raises when the key was never set
        return None


def test_spin_window_is_passed_to_both_thread_pools():
    options = edgetf.SessionOptions(spin_duration_us=100)
    assert [config(options, key) for key in KEYS] == ["100", "100"]
    assert config(options, "session.intra_op.allow_spinning") == "1"


def test_no_spin_window_without_spinning_or_when_left_to_onnxruntime():
    assert [config(edgetf.SessionOptions(allow_spinning=False, spin_duration_us=100), k) for k in KEYS] == [None, None]
    assert [config(edgetf.SessionOptions(), k) for k in KEYS] == [None, None]


@pytest.mark.parametrize("bad", [-1, 1.5, "100", True])
def test_bad_spin_window_names_the_option(bad):
    with pytest.raises(ValueError, match="spin_duration_us"):
        edgetf.SessionOptions(spin_duration_us=bad)


def test_session_with_a_spin_window_gives_the_same_result(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = {"x": np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], np.float32)}
    options = edgetf.SessionOptions(intra_op_threads=2, spin_duration_us=50)
    out = Session(path, options=options).run(feeds)["y"]
    np.testing.assert_array_equal(out, np.maximum(feeds["x"], 0))
