"""device="openvino" on the OpenVINO runtime (edgetf/openvino_engine.py) and the "qdq" dtype made for it.

OpenVINO's fp32 outputs match onnxruntime's on the same bundle (FP32_TOL: both run the same float graph,
only kernels and summation order differ); the qdq file run by OpenVINO stays within the random-weight gate
(export/gates.py: 25% relative L2) of the transformers reference; bad input fails exactly as on the CPU path;
a missing openvino package is a DeviceError that says how to install it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys

import numpy as np
import onnx
import pytest
from helpers import varied_images

import edgetf
from edgetf.errors import DeviceError, InferenceError, InvalidInputError
from edgetf.openvino_engine import CACHE_SIZE, OpenVINOSession
from edgetf.session import SessionOptions, open_session
from export import gates, quantize

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FP32_TOL = 1e-4  # max abs difference of logits / hidden states, OpenVINO fp32 vs onnxruntime fp32
QDQ = ("fp32", "q8", "qdq")
TEXTS = ["I love this movie, it was wonderful!", "terrible.", "a much longer sentence " * 6, "x"]
IMAGES = ("shapes 320x240", "gradient 96x96", "tall 40x150", "L")
MODELS = {
    "text-classification": "bert-sentiment",
    "feature-extraction": "minilm-embeddings",
    "image-classification": "vit-base",
}


def rel_error(reference: np.ndarray, got: np.ndarray) -> float:
    return gates.relative_error(reference, got)


def inputs_for(task: str) -> list:
    return list(varied_images(*IMAGES).values()) if task == "image-classification" else TEXTS


def outputs(pipe, task: str, items: list) -> list[np.ndarray]:
    """Per input: logits (classification) or last hidden states (feature extraction), as float arrays."""
    if task == "feature-extraction":
        return [np.asarray(pipe(item), np.float64) for item in items]
    if task == "text-classification":
        return [np.asarray(pipe.logits([(item, None)]), np.float64) for item in items]
    return [np.asarray(pipe.logits([item]), np.float64) for item in items]


def reference_outputs(ref, task: str, items: list) -> list[np.ndarray]:
    import torch

    if task == "feature-extraction":
        return [np.asarray(ref(item), np.float64) for item in items]
    result = []
    with torch.no_grad():
        for item in items:
            if task == "image-classification":
                feeds = ref.image_processor(item.convert("RGB"), return_tensors="pt")
            else:
                feeds = ref.tokenizer(item, return_tensors="pt", truncation=True)
            result.append(ref.model(**feeds).logits.numpy().astype(np.float64))
    return result


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request, tiny):
    return request.param, tiny.get(MODELS[request.param], dtypes=QDQ)


def test_session_is_the_openvino_adapter_with_the_session_surface(built):
    task, b = built
    pipe = edgetf.pipeline(task, b.bundle, dtype="fp32", device="openvino")
    session, cpu = pipe.session(), edgetf.pipeline(task, b.bundle, dtype="fp32").session()
    assert isinstance(session, OpenVINOSession) and session.providers == ["OpenVINO:CPU"]
    assert list(session.inputs) == list(cpu.inputs) and session.output_names == cpu.output_names
    assert all(session.input_dtype(n) == cpu.input_dtype(n) for n in cpu.inputs)
    assert all(session.inputs[n].type == cpu.inputs[n].type for n in cpu.inputs)


def test_fp32_matches_onnxruntime_on_the_same_bundle(built):
    task, b = built
    items = inputs_for(task)
    ort_out = outputs(edgetf.pipeline(task, b.bundle, dtype="fp32"), task, items)
    ov_out = outputs(edgetf.pipeline(task, b.bundle, dtype="fp32", device="openvino"), task, items)
    for ref, got in zip(ort_out, ov_out):
        assert ref.shape == got.shape
        assert np.max(np.abs(ref - got)) <= FP32_TOL


def test_qdq_on_openvino_is_within_the_gate_of_the_reference(built, reference):
    task, b = built
    report = b.manifest["dtypes"]["qdq"]
    assert report["passed"] and report["recipe"]["model"]["method"] == "static-qdq"
    pipe = edgetf.pipeline(task, b.bundle, device="openvino")  # auto -> qdq on openvino
    assert pipe.dtype == "qdq" and edgetf.pipeline(task, b.bundle).dtype == "q8"
    items = inputs_for(task)
    expected = reference_outputs(reference(task, b), task, items)
    got = outputs(pipe, task, items)
    errors = [rel_error(e, g) for e, g in zip(expected, got)]
    assert max(errors) <= gates.RANDOM_MAX_REL_ERROR
    assert min(errors) > 0  # really int8: not the float graph


def test_qdq_file_quantizes_every_matmul_but_the_levels_float_ones(built):
    _, b = built
    recipe = b.manifest["dtypes"]["qdq"]["recipe"]["model"]
    model = onnx.load(str(b.bundle / "onnx" / "model_qdq.onnx"), load_external_data=False)
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    weights = {init.name for init in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    float_weighted = [n for n in matmuls if n.input[1] in weights]
    quantized = [n for n in matmuls if n.input[1] not in weights]
    assert recipe["level"] in quantize.QDQ_LEVELS and len(float_weighted) == recipe["float_nodes"]
    assert (recipe["float_nodes"] == 0) == (recipe["level"] == "all")
    assert quantized and all(producer.get(i) == "DequantizeLinear" for n in quantized for i in n.input[:2])


@pytest.mark.parametrize(
    "bad,match",
    [(None, "takes a str"), (42, "takes a str"), ([1, 2], "per input; got int"), ({"text": 3}, "text must be a str")],
)
def test_bad_text_input_fails_exactly_as_on_cpu(tiny, bad, match):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    messages = []
    for device in ("cpu", "openvino"):
        with pytest.raises(InvalidInputError, match=match) as info:
            edgetf.pipeline("text-classification", b.bundle, device=device)(bad)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_bad_image_input_fails_exactly_as_on_cpu(tiny):
    b = tiny.get(MODELS["image-classification"], dtypes=QDQ)
    messages = []
    for device in ("cpu", "openvino"):
        with pytest.raises(InvalidInputError) as info:
            edgetf.pipeline("image-classification", b.bundle, device=device)(12345)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_auto_skips_a_qdq_file_that_failed_its_gate(tiny, tmp_path):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    copy = tmp_path / "bundle"
    shutil.copytree(b.bundle, copy)
    manifest = json.loads((copy / "edgetf.json").read_text())
    manifest["dtypes"]["qdq"]["passed"] = False
    (copy / "edgetf.json").write_text(json.dumps(manifest))
    assert edgetf.pipeline("text-classification", copy, device="openvino").dtype == manifest["default_dtype"] == "q8"


def test_compiles_once_per_input_shape_and_keeps_the_last_few(tiny):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    session = open_session(b.bundle / "onnx" / "model_qdq.onnx", "openvino", SessionOptions(intra_op_threads=1))
    feeds = {name: np.ones((1, 5), np.int64) for name in session.inputs}
    first = session.run(feeds)["logits"]
    np.testing.assert_array_equal(session.run(feeds)["logits"], first)  # same shape: same compiled graph
    assert len(session.compiled_shapes()) == 1
    for length in range(6, 6 + CACHE_SIZE + 2):
        session.run({name: np.ones((1, length), np.int64) for name in session.inputs})
    shapes = session.compiled_shapes()
    assert len(shapes) == CACHE_SIZE and dict(shapes[-1])["input_ids"] == (1, 5 + CACHE_SIZE + 2)
    compiled = session.compiled_for({name: np.ones((1, 5 + CACHE_SIZE + 2), np.int64) for name in session.inputs})
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"


def test_optimized_cache_keeps_openvinos_compiled_graphs(tiny, tmp_path):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    options = SessionOptions(optimized_cache=str(tmp_path))
    first = open_session(b.bundle / "onnx" / "model_qdq.onnx", "openvino", options)
    feeds = {name: np.ones((1, 4), np.int64) for name in first.inputs}
    expected = first.run(feeds)["logits"]
    assert [p for p in (tmp_path / "openvino").iterdir() if p.suffix == ".blob"]
    again = open_session(b.bundle / "onnx" / "model_qdq.onnx", "openvino", options)  # loads the cached blob
    np.testing.assert_array_equal(again.run(feeds)["logits"], expected)


def test_missing_feeds_and_unknown_outputs_are_named(tiny):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    session = open_session(b.bundle / "onnx" / "model.onnx", "openvino")
    with pytest.raises(InferenceError, match="needs inputs .*attention_mask"):
        session.run({"input_ids": np.ones((1, 3), np.int64)})
    with pytest.raises(InferenceError, match="has no outputs \\['nope'\\]"):
        session.run({name: np.ones((1, 3), np.int64) for name in session.inputs}, ["nope"])


def test_missing_openvino_package_says_how_to_install_it(tiny, monkeypatch):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    pipe = edgetf.pipeline("text-classification", b.bundle, device="openvino")
    with pytest.raises(DeviceError, match=r"pip install 'edgetf\[openvino\]'"):
        pipe("hello")


def test_qdq_is_refused_for_generative_and_multi_graph_tasks():
    quantize.check_qdq_task("feature-extraction", ("model",))
    with pytest.raises(ValueError, match="encoder-only tasks.*use q8"):
        quantize.check_qdq_task("text-generation", ("model",))
    with pytest.raises(ValueError, match="encoder-only tasks"):
        quantize.check_qdq_task("text-classification", ("encoder_model", "decoder_model_merged"))


def test_qdq_bytes_are_deterministic(tiny, tmp_path):
    b = tiny.get(MODELS["text-classification"], dtypes=QDQ)
    rng = np.random.default_rng(0)
    feeds = [
        {"input_ids": rng.integers(5, 900, (1, n)), "attention_mask": np.ones((1, n), np.int64)} for n in (4, 9, 17)
    ]
    for feed in feeds:  # BERT also takes token_type_ids
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
    digests = []
    for attempt in range(2):
        dst = tmp_path / f"qdq{attempt}.onnx"
        quantize.quantize_qdq(b.bundle / "onnx" / "model.onnx", dst, calibration=feeds)
        digests.append(hashlib.sha256(dst.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_verify_runs_the_golden_feeds_on_openvino(built):
    from edgetf.verify import verify_bundle

    _, b = built
    report = verify_bundle(b.bundle, ["fp32", "qdq"], device="openvino")
    assert report["passed"] and report["dtypes"]["fp32"]["rel_error"] <= FP32_TOL
    qdq = report["dtypes"]["qdq"]
    assert 0 < qdq["rel_error"] <= qdq["max_rel_error"] and qdq["feeds"] > 0


def test_export_refuses_qdq_for_a_decoder_in_one_line(tmp_path):
    from export import catalog
    from export.build import export_entry
    from export.plan import UnsupportedExport

    with pytest.raises(UnsupportedExport, match="gpt2: dtype 'qdq' .* encoder-only tasks"):
        export_entry(catalog.get("gpt2"), tmp_path, tiny_model=True, dtypes=("fp32", "qdq"), log=lambda _m: None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gpt2.partial")]  # nothing half-written


def test_onnxruntimes_openvino_provider_is_kept_where_installed(monkeypatch, tmp_path):
    import edgetf.session as session_module

    opened = []
    monkeypatch.setattr(session_module.ort, "get_available_providers", lambda: ["OpenVINOExecutionProvider", "CPU"])
    monkeypatch.setattr(session_module, "Session", lambda *args: opened.append(args) or "ort-session")
    assert open_session(tmp_path / "model.onnx", "openvino") == "ort-session"
    assert opened[0][1] == "openvino"
