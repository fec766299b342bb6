"""Static (calibrated) QDQ int8 convolutions, the q8 ladder's ``conv-static`` level (export/quantize.py):
which families get it (edgetf/families.py), that every conv of the tiny DETR reads int8 weights and
activations, that calibration is deterministic, and that a level missing its gate falls back to the
MatMul-only recipe."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest

from edgetf.families import family_for
from export import calibration, catalog, quantize
from export.build import export_entry

MODEL = "detr-resnet-50"


def test_ladder_tries_conv_static_first_only_with_static_feeds():
    assert quantize.ladder({}, {"model": [{}]})[:2] == (quantize.CONV_LEVEL, "all")
    assert quantize.CONV_LEVEL not in quantize.ladder({"model": [{}]})
    assert quantize.CONV_LEVEL not in quantize.ladder({}, {})


def test_family_table_says_which_families_quantize_convolutions():
    static = {
        t
        for t in ("detr", "glpn", "mask2former", "wav2vec2", "vit", "bert")
        if family_for({"model_type": t}).quantize.get("static_conv")
    }
    assert static == {"detr", "glpn", "mask2former"}  # wav2vec2: measured to miss the gate (README)
    assert family_for({"model_type": "glpn"}).quantize["static_conv"]["float_nodes"]  # depthwise convs stay float


def conv_inputs_from_dequantize(path) -> tuple[int, int]:
    """(convs, convs whose data and weight inputs both come out of DequantizeLinear)."""
    model = onnx.load(str(path), load_external_data=False)
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [n for n in convs if all(producer.get(i) == "DequantizeLinear" for i in n.input[:2])]
    return len(convs), len(quantized)


def test_tiny_detr_q8_has_int8_convolutions_and_passes_its_gate(tiny):
    built = tiny.get(MODEL)
    q8 = built.manifest["dtypes"]["q8"]
    assert q8["passed"] and q8["recipe"]["model"]["level"] == quantize.CONV_LEVEL
    assert q8["parity"]["output_rel_error"] <= 0.25
    static = q8["recipe"]["model"]["static"]
    assert static["calibration_feeds"] == calibration.COUNT["tiny"]
    convs, quantized = conv_inputs_from_dequantize(built.bundle / "onnx" / "model_quantized.onnx")
    assert convs == quantized == static["quantized_convs"] > 0


def test_calibration_is_deterministic(tiny, tmp_path):
    built = tiny.get(MODEL)
    spec = family_for({"model_type": "detr"}).quantize["static_conv"]
    written = []
    for run in range(2):
        feeds = calibration.record("object-detection", built.bundle, 3)["model"]
        dst = tmp_path / f"run{run}" / "model_quantized.onnx"
        dst.parent.mkdir()
        quantize.quantize_conv_static(built.bundle / "onnx" / "model.onnx", dst, calibration=feeds, spec=spec)
        written.append(b"".join(p.read_bytes() for p in sorted(dst.parent.iterdir())))
    assert written[0] == written[1]


def test_calibration_inputs_are_the_builtin_set_spread_evenly():
    images = calibration.samples("depth-estimation", 8)
    assert len(images) == 8 and len({im.size for im in images}) > 3
    signals = calibration.samples("automatic-speech-recognition", 4)
    assert len(signals) == 4 and all(s.dtype == np.float32 for s in signals)
    with pytest.raises(ValueError, match="no calibration inputs for task 'fill-mask'"):
        calibration.samples("fill-mask", 4)


def test_conv_level_missing_its_gate_falls_back_to_matmul_only(tmp_path, monkeypatch):
    real = calibration.record

    def squeezed(task, bundle, count):  # ranges calibrated on near-zero pixels: every conv output clips
        return {
            c: [{k: v * 1e-4 if v.dtype == np.float32 else v for k, v in f.items()} for f in feeds]
            for c, feeds in real(task, bundle, count).items()
        }

    monkeypatch.setattr(calibration, "record", squeezed)
    entry = replace(catalog.get(MODEL), dtypes=("fp32", "q8"))
    result = export_entry(entry, tmp_path, tiny_model=True, log=lambda _m: None)
    assert result.status == "ok", result.detail
    assert result.dtypes["q8"]["recipe"]["model"]["level"] == "all"
