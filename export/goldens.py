"""Golden inputs for `python -m edgetf verify`: a few recorded graph feeds per component with the fp32
graph's outputs, written into the bundle at export time (``golden.npz`` + ``golden.json``, both listed
and checksummed in edgetf.json).

The feeds are the ones the verification's edgetf pipeline ran (tokenized texts, pixel values, audio
features, decoder steps with their KV cache), so the fp32 outputs stored beside them are the outputs
that were just shown to match the reference transformers pipeline. For each dtype the bundle has,
``golden.json`` records the error measured here and the bound ``verify`` allows on another machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetf.verify import GOLDEN_FORMAT, GOLDEN_JSON, GOLDEN_NPZ, compare_dtype, npz_key

FEEDS_PER_COMPONENT = 4
# fp32 on another CPU or onnxruntime build: same graph, other kernels and summation order
FP32_BOUND = 1e-3
# quantized: the error measured at export, doubled, plus 0.02 for another machine's int8 kernels
# (u8 x s8 on ARM dot-product vs x86 VNNI round the dequantized sums differently)
QUANT_FACTOR, QUANT_SLACK = 2.0, 0.02


def bound_for(dtype: str, measured: float) -> float:
    return FP32_BOUND if dtype == "fp32" else QUANT_FACTOR * measured + QUANT_SLACK


def record(bundle: Path, dtypes: list[str], feeds: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Write golden.npz / golden.json for ``dtypes`` from recorded ``feeds``; None without feeds."""
    import numpy as np
    import onnxruntime as ort

    from edgetf.bundle import onnx_filename

    feeds = {c: items[:FEEDS_PER_COMPONENT] for c, items in feeds.items() if items}
    if not feeds:
        return None
    arrays: dict[str, Any] = {}
    components = {}
    for component, items in feeds.items():
        session = ort.InferenceSession(
            str(bundle / onnx_filename(component, "fp32")), providers=["CPUExecutionProvider"]
        )
        declared = [i.name for i in session.get_inputs()]
        output = session.get_outputs()[0].name  # logits / last hidden state / the first of several
        for i, feed in enumerate(items):
            ready = {k: feed[k] for k in declared}
            for name, value in ready.items():
                arrays[npz_key(component, i, "in", name)] = np.asarray(value)
            arrays[npz_key(component, i, "out", output)] = session.run([output], ready)[0]
        components[component] = {"feeds": len(items), "inputs": declared, "output": output}
    np.savez_compressed(bundle / GOLDEN_NPZ, **arrays)
    golden: dict[str, Any] = {"format": GOLDEN_FORMAT, "components": components, "dtypes": {}}
    for dtype in dtypes:
        measured = compare_dtype(bundle, golden, dict(np.load(bundle / GOLDEN_NPZ)), dtype)
        golden["dtypes"][dtype] = {
            "max_rel_error": bound_for(dtype, measured["rel_error"]),
            "measured_at_export": measured,
        }
    golden["bounds"] = (
        f"fp32: relative L2 error <= {FP32_BOUND:g}; quantized: {QUANT_FACTOR:g} x the error measured at export "
        f"+ {QUANT_SLACK:g}"
    )
    (bundle / GOLDEN_JSON).write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    return golden
