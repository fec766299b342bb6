"""`python -m edgetf verify`: golden feeds recorded at export re-run here; checksums and accuracy bounds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgetf.__main__ import main
from edgetf.verify import GOLDEN_JSON, GOLDEN_NPZ, verify_bundle

NAMES = ("distilbert-sst2", "gpt2")


@pytest.fixture(scope="module", params=NAMES)
def built(request, tiny):
    return tiny.get(request.param)


def test_golden_files_are_listed_and_bounded(built):
    assert {GOLDEN_JSON, GOLDEN_NPZ} <= set(built.manifest["files"])
    golden = json.loads((built.bundle / GOLDEN_JSON).read_text())
    assert set(golden["dtypes"]) == set(built.manifest["dtypes"])
    assert golden["dtypes"]["fp32"]["max_rel_error"] == pytest.approx(1e-3)
    q8 = golden["dtypes"]["q8"]
    assert q8["max_rel_error"] > q8["measured_at_export"]["rel_error"] > 0


def test_verify_passes_every_dtype_here(built, capsys):
    report = verify_bundle(built.bundle)
    assert report["passed"] and not report["checksum_failures"]
    assert report["dtypes"]["fp32"]["rel_error"] <= 1e-5  # same machine, same kernels
    assert main(["verify", str(built.bundle), "--dtype", "q8"]) == 0
    assert "q8     PASS" in capsys.readouterr().out


def _worse_q8(bundle, tmp_path):
    """A copy of the bundle whose q8 file comes from perturbed weights, manifest rewritten to match it."""
    import onnx
    from onnx import numpy_helper

    from export import external_data
    from export.quantize import quantize_q8

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    model = onnx.load(str(copy / "onnx" / "model.onnx"))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 2:
            init.CopyFrom(
                numpy_helper.from_array(w + rng.normal(0, float(w.std()), w.shape).astype(w.dtype), init.name)
            )
    noisy = tmp_path / "noisy.onnx"
    onnx.save(model, str(noisy))
    for stale in ("model_quantized.onnx", "model_quantized.onnx_data"):
        (copy / "onnx" / stale).unlink(missing_ok=True)
    quantize_q8(noisy, copy / "onnx" / "model_quantized.onnx")
    external_data.externalize(copy / "onnx" / "model_quantized.onnx")
    return copy


@pytest.fixture
def sst2(tiny):
    return tiny.get("distilbert-sst2")


def test_worse_q8_is_caught(sst2, tmp_path, capsys):
    from export import manifest

    copy = _worse_q8(sst2.bundle, tmp_path)
    assert main(["verify", str(copy)]) == 1  # the q8 file no longer matches edgetf.json
    out = capsys.readouterr().out
    assert "CHECKSUM FAIL" in out and "model_quantized.onnx" in out

    data = json.loads((copy / "edgetf.json").read_text())
    data["files"] = manifest.file_table(copy)  # an attacker / a bad copy that also rewrote the manifest
    (copy / "edgetf.json").write_text(json.dumps(data))
    report = verify_bundle(copy)
    assert not report["checksum_failures"]
    assert report["dtypes"]["fp32"]["passed"] and not report["dtypes"]["q8"]["passed"]
    assert report["dtypes"]["q8"]["rel_error"] > 2 * report["dtypes"]["q8"]["max_rel_error"]


def test_bundle_without_goldens_says_so(sst2, tmp_path):
    from edgetf.errors import BundleError

    copy = tmp_path / "old"
    shutil.copytree(sst2.bundle, copy)
    for name in (GOLDEN_JSON, GOLDEN_NPZ):
        (copy / name).unlink()
    data = json.loads((copy / "edgetf.json").read_text())
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith("golden")}
    (copy / "edgetf.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="re-export"):
        verify_bundle(copy)
    with pytest.raises(BundleError, match="has: fp32, q8"):
        verify_bundle(sst2.bundle, ["q4"])


def test_file_of_another_size_is_a_checksum_failure_not_an_error(sst2, tmp_path, capsys):
    copy = tmp_path / "sst2"
    shutil.copytree(sst2.bundle, copy)
    (copy / "onnx" / "model_quantized.onnx").write_bytes(b"not a graph")  # a truncated or swapped copy
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "CHECKSUM FAIL onnx/model_quantized.onnx" in out and "bytes but edgetf.json records" in out
