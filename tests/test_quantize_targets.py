"""q8 presets per CPU target: a catalog entry's quantize.target (or the --target flag) reaches the file.

Each case exports a tiny entry with the real export code and checks what the manifest records, what
the quantized ONNX file really holds (weight dtype, one zero point per output channel, full 8-bit
range = no reduce_range), and that the q8 file passed verification against transformers.
"""

from dataclasses import replace

import numpy as np
import pytest

import edgetf
from export import catalog
from export.build import export_entry
from export.quantize import PRESETS, host_target

EXPECTED = {  # target -> (weight type, per channel, reduce_range): what each CPU family's kernels want
    "avx512": ("QInt8", True, False),
    "avx2": ("QUInt8", True, False),
    "arm64": ("QInt8", True, False),
}


def quantized_weights(path):
    """(weights, weight zero points) of every MatMulInteger whose B input is an initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type == "MatMulInteger" and node.input[1] in inits:
            weights = numpy_helper.to_array(inits[node.input[1]])
            zero = numpy_helper.to_array(inits[node.input[3]]) if len(node.input) > 3 else None
            found.append((weights, zero))
    return found


def test_presets_table():
    assert set(PRESETS) == set(EXPECTED)
    for name, (wtype, per_channel, reduce_range) in EXPECTED.items():
        p = PRESETS[name]
        assert (p.name, p.weight_type, p.per_channel, p.reduce_range) == (name, wtype, per_channel, reduce_range)
    assert host_target() in PRESETS


@pytest.mark.slow
@pytest.mark.parametrize("expected", ["avx512", "avx2", "arm64"])
def test_target_reaches_manifest_and_file(tmp_path, expected):
    entry = replace(catalog.get("distilbert-sst2"), dtypes=("fp32", "q8"))
    result = export_entry(entry, tmp_path, tiny_model=True, target=expected, log=lambda _m: None)
    assert result.status == "ok", result.detail
    manifest = edgetf.Bundle.open(result.bundle).manifest
    q8 = manifest["dtypes"]["q8"]
    recipe = q8["recipe"]["model"]
    wtype, per_channel, reduce_range = EXPECTED[expected]
    assert recipe["preset"] == {
        "name": expected,
        "weight_type": wtype,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "why": PRESETS[expected].why,
    }
    assert recipe["weight_type"] == wtype and recipe["method"] == "dynamic"
    assert q8["passed"] is True and q8["parity"]["agreement"] >= 0.9
    assert manifest["default_dtype"] == "q8"

    found = quantized_weights(result.bundle / "onnx" / "model_quantized.onnx")
    assert found, "no MatMulInteger with constant weights in the q8 file"
    want = np.int8 if wtype == "QInt8" else np.uint8
    for weights, zero in found:
        assert weights.dtype == want
        # per channel: one zero point per output column of the (K, N) weight
        assert zero is not None and zero.shape == (weights.shape[1],)
        # no reduce_range: every channel uses the full 8-bit range (symmetric s8: |q| reaches 127;
        # asymmetric u8: 0 and 255 both used); reduce_range would stop at 7 bits
        if want is np.int8:
            assert (np.abs(weights.astype(np.int16)).max(axis=0) == 127).all()
            assert (zero == 0).all()
        else:
            assert (weights.min(axis=0) == 0).all() and (weights.max(axis=0) == 255).all()
