"""Bundle contract: layout, manifest checks, dtype resolution, clear errors for every bad case."""

import json
import os
import shutil

import numpy as np
import pytest

import edgetf
from edgetf import hashcache
from edgetf.bundle import Bundle, onnx_filename
from edgetf.errors import (
    BundleError,
    DeviceError,
    DtypeError,
    InferenceError,
    IntegrityError,
    TaskMismatchError,
    UnknownTaskError,
)
from edgetf.session import Session


@pytest.fixture(scope="module")
def built(tiny):
    return tiny.get("distilbert-sst2")


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the bundle that a test may damage."""
    target = tmp_path / "bundle"
    shutil.copytree(built.bundle, target)
    return target


def test_layout_and_manifest(built):
    names = {p.relative_to(built.bundle).as_posix() for p in built.bundle.rglob("*") if p.is_file()}
    assert {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "onnx/model.onnx",
        "onnx/model.onnx_data",
        "onnx/model_quantized.onnx",
        "onnx/model_quantized.onnx_data",
        "edgetf.json",
    } <= names
    manifest = built.manifest
    assert manifest["task"] == "text-classification"
    assert set(manifest["files"]) == names - {"edgetf.json", ".fingerprint"}
    for rel, meta in manifest["files"].items():
        assert meta["size"] == (built.bundle / rel).stat().st_size and len(meta["sha256"]) == 64
    for dtype in ("fp32", "q8"):
        report = manifest["dtypes"][dtype]
        assert report["passed"] is True and report["parity"]["n"] >= 10
    assert manifest["dtypes"]["q8"]["recipe"]["model"]["preset"]["name"] in ("avx512", "avx2", "arm64")
    assert manifest["dtypes"]["q8"]["files"] == ["onnx/model_quantized.onnx", "onnx/model_quantized.onnx_data"]
    # transformers.js fetches <file>_data only where config.json says so
    flags = json.loads((built.bundle / "config.json").read_text())["transformers.js_config"]["use_external_data_format"]
    assert flags == {"model.onnx": True, "model_quantized.onnx": True}
    assert {"transformers", "onnxruntime", "optimum"} <= set(manifest["tools"])


def test_auto_dtype_picks_the_verified_quantized_file(built):
    assert edgetf.pipeline("text-classification", built.bundle).dtype == "q8"
    assert edgetf.pipeline("text-classification", built.bundle, dtype="fp32").dtype == "fp32"


def test_failed_dtype_is_not_the_default_and_warns(copy):
    manifest = json.loads((copy / "edgetf.json").read_text())
    manifest["dtypes"]["q8"]["passed"] = False
    manifest["default_dtype"] = "fp32"
    (copy / "edgetf.json").write_text(json.dumps(manifest))
    assert edgetf.pipeline(None, copy).dtype == "fp32"
    with pytest.warns(UserWarning, match="failed its parity check"):
        edgetf.pipeline(None, copy, dtype="q8")


def test_missing_folder():
    with pytest.raises(BundleError, match="does not exist"):
        edgetf.pipeline("text-classification", "/nonexistent/bundle")


def test_missing_config(copy):
    (copy / "config.json").unlink()
    with pytest.raises(BundleError, match="config.json"):
        Bundle.open(copy, verify="none")


def test_flipped_byte_is_refused_naming_the_file(copy):
    path = copy / "onnx" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    pipe = edgetf.pipeline("text-classification", copy, dtype="fp32")  # sizes match; hash checked on first use
    with pytest.raises(IntegrityError, match="onnx/model.onnx.*sha256"):
        pipe("hello")


def test_flipped_byte_in_the_weights_file_is_refused_before_onnxruntime_loads_it(copy):
    path = copy / "onnx" / "model_quantized.onnx_data"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    pipe = edgetf.pipeline("text-classification", copy, dtype="q8")
    with pytest.raises(IntegrityError, match="onnx/model_quantized.onnx_data.*sha256"):
        pipe("hello")


def test_weights_file_not_in_the_manifest_is_refused(copy):
    manifest = json.loads((copy / "edgetf.json").read_text())
    del manifest["files"]["onnx/model.onnx_data"]
    (copy / "edgetf.json").write_text(json.dumps(manifest))
    pipe = edgetf.pipeline("text-classification", copy, dtype="fp32")
    with pytest.raises(IntegrityError, match="model.onnx_data .* is not listed"):
        pipe("hello")


def test_truncated_file_is_refused_at_open(copy):
    path = copy / "onnx" / "model_quantized.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IntegrityError, match="model_quantized.onnx in .* is 100 bytes"):
        edgetf.pipeline("text-classification", copy)


def test_missing_listed_file(copy):
    (copy / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match="missing tokenizer.json"):
        Bundle.open(copy)


@pytest.mark.parametrize("rel", ["../outside.onnx", "/etc/passwd"])
def test_manifest_path_outside_the_bundle(copy, rel):
    manifest = json.loads((copy / "edgetf.json").read_text())
    manifest["files"][rel] = {"size": 1, "sha256": "0" * 64}
    (copy / "edgetf.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="outside the bundle"):
        Bundle.open(copy)


def test_absurd_declared_size(copy):
    manifest = json.loads((copy / "edgetf.json").read_text())
    manifest["files"]["onnx/model.onnx"]["size"] = 10**15
    (copy / "edgetf.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="records 1000000000000000"):
        Bundle.open(copy)


def test_corrupt_onnx_without_manifest_names_the_file(copy):
    (copy / "edgetf.json").unlink()
    (copy / "onnx" / "model.onnx").write_bytes(b"not an onnx file")
    pipe = edgetf.pipeline("text-classification", copy, dtype="fp32")
    with pytest.raises(BundleError, match="cannot load .*model.onnx"):
        pipe("hello")


def test_unknown_task_lists_valid_ones(built):
    with pytest.raises(UnknownTaskError, match="accepted: text-classification"):
        edgetf.pipeline("text-clasification", built.bundle)


def test_task_mismatch(built):
    with pytest.raises(TaskMismatchError, match="exported for 'text-classification'"):
        edgetf.pipeline("summarization", built.bundle)


def test_alias_and_own_task(built):
    assert edgetf.pipeline("sentiment-analysis", built.bundle).task == "text-classification"
    assert edgetf.pipeline(None, built.bundle).task == "text-classification"


def test_unknown_dtype(built):
    with pytest.raises(DtypeError, match="unknown dtype 'int3'"):
        edgetf.pipeline("text-classification", built.bundle, dtype="int3")


def test_absent_dtype_lists_available(built):
    with pytest.raises(DtypeError, match="available dtypes: fp32, q8"):
        edgetf.pipeline("text-classification", built.bundle, dtype="q4")


@pytest.mark.parametrize("device,match", [("tpu", "unknown device"), ("cuda:x", "non-negative integer")])
def test_bad_device(built, device, match):
    with pytest.raises(DeviceError, match=match):
        edgetf.pipeline("text-classification", built.bundle, device=device)("hi")


def test_unavailable_device_is_an_error_not_a_silent_fallback(built):
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("this machine has CUDA; the error path needs a CPU-only onnxruntime")
    with pytest.raises(DeviceError, match="CUDAExecutionProvider.*install"):
        edgetf.pipeline("text-classification", built.bundle, device="cuda")("hi")


def test_onnx_community_folder_without_manifest(built, tmp_path):
    """A transformers.js-style folder: no edgetf.json, task from config.json, quantized file only."""
    folder = tmp_path / "onnx-community"
    (folder / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(built.bundle / name, folder / name)
    for name in ("model_quantized.onnx", "model_quantized.onnx_data"):
        shutil.copy(built.bundle / "onnx" / name, folder / "onnx" / name)
    pipe = edgetf.pipeline(None, folder)
    assert (pipe.task, pipe.dtype) == ("text-classification", "q8")
    reference = edgetf.pipeline(None, built.bundle, dtype="q8")
    assert pipe("a test") == reference("a test")


def test_session_names_missing_inputs(built):
    session = Session(built.bundle / onnx_filename("model", "fp32"))
    with pytest.raises(InferenceError, match="needs inputs \\['attention_mask'\\].*declares"):
        session.run({"input_ids": np.ones((1, 4), np.int64)})


def test_session_wraps_onnxruntime_failures_with_shapes(built):
    session = Session(built.bundle / onnx_filename("model", "fp32"))
    bad = {"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 4, 2), np.int64)}
    with pytest.raises(InferenceError, match=r"attention_mask: int64 \[1, 4, 2\]"):
        session.run(bad)


def test_optimized_graph_cache_is_reused(built, tmp_path):
    options = edgetf.SessionOptions(optimized_cache=str(tmp_path / "cache"))
    first = edgetf.pipeline(None, built.bundle, dtype="fp32", session_options=options)
    out = first("cache me")
    cached = list((tmp_path / "cache").glob("*.onnx"))
    assert len(cached) == 1
    second = edgetf.pipeline(None, built.bundle, dtype="fp32", session_options=options)
    assert second("cache me") == out


def test_verified_hash_is_remembered_while_the_file_is_unchanged(copy, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGETF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hashcache, "RACY_SECONDS", 0.0)  # the copy was just written
    expected = edgetf.pipeline("text-classification", copy, dtype="q8")("cached")
    cached = json.loads((tmp_path / "cache" / hashcache.CACHE_FILE).read_text())
    data = str((copy / "onnx" / "model_quantized.onnx_data").resolve())
    assert data in cached
    manifest = json.loads((copy / "edgetf.json").read_text())
    assert cached[data]["sha256"] == manifest["files"]["onnx/model_quantized.onnx_data"]["sha256"]

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(hashcache, "sha256_file", no_hashing)
    assert edgetf.pipeline("text-classification", copy, dtype="q8")("cached") == expected


def test_changed_file_is_rehashed_even_with_its_mtime_restored(copy, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGETF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hashcache, "RACY_SECONDS", 0.0)
    edgetf.pipeline("text-classification", copy, dtype="q8")("warm the cache")
    path = copy / "onnx" / "model_quantized.onnx_data"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime; ctime still moves
    with pytest.raises(IntegrityError, match="model_quantized.onnx_data.*sha256"):
        edgetf.pipeline("text-classification", copy, dtype="q8")("tampered")


def test_empty_cache_dir_setting_hashes_every_time(copy, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGETF_CACHE_DIR", "")
    assert hashcache.cache_path() is None
    assert edgetf.pipeline("text-classification", copy, dtype="q8")("no cache")
