"""scripts/arm64_golden.py: recordings of bundle outputs and the cross-machine comparison rules."""

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("arm64_golden", ROOT / "scripts" / "arm64_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


def recording(fp32_output, q8_output=None):
    """A minimal hand-made recording: one bundle, one input per dtype."""
    dtypes = {"fp32": {"cases": {"demo": {"input": "abc", "options": {}, "output": fp32_output}}}}
    if q8_output is not None:
        dtypes["q8"] = {"cases": {"demo": {"input": "abc", "options": {}, "output": q8_output}}}
    meta = {"machine": "x", "python": "3", "onnxruntime": "1", "numpy": "2"}
    return {**meta, "bundles": {"b": {"task": "text-classification", "dtypes": dtypes}}}


RANKED = [{"label": "POSITIVE", "score": 0.6}, {"label": "NEGATIVE", "score": 0.3}, {"label": "NEUTRAL", "score": 0.1}]


def rows_by_dtype(a, b):
    rows, ok = golden.compare(a, b, 1e-4)
    return {r["dtype"]: r for r in rows}, ok


def test_identical_recordings_pass():
    rec = recording(RANKED, RANKED)
    rows, ok = rows_by_dtype(rec, copy.deepcopy(rec))
    assert ok and rows["fp32"]["status"] == "PASS" and rows["q8"]["top1"] == 1


@pytest.mark.parametrize("drift,passes", [(5e-5, True), (2e-4, False)])
def test_fp32_float_tolerance(drift, passes):
    other = copy.deepcopy(RANKED)
    other[1]["score"] += drift
    rows, ok = rows_by_dtype(recording(RANKED), recording(other))
    assert ok is passes and rows["fp32"]["status"] == ("PASS" if passes else "FAIL")
    assert rows["fp32"]["max_abs"] == pytest.approx(drift, rel=1e-6)


def test_fp32_large_values_use_relative_tolerance():
    rows, ok = rows_by_dtype(recording([{"depth": 1000.0}]), recording([{"depth": 1000.05}]))
    assert ok and rows["fp32"]["max_rel"] == pytest.approx(5e-5, rel=1e-3)


def test_fp32_label_or_structure_change_fails():
    swapped = copy.deepcopy(RANKED)
    swapped[0]["label"], swapped[1]["label"] = "NEGATIVE", "POSITIVE"
    rows, ok = rows_by_dtype(recording(RANKED), recording(swapped))
    assert not ok and "'POSITIVE' != 'NEGATIVE'" in rows["fp32"]["detail"]
    rows, ok = rows_by_dtype(recording(RANKED), recording(RANKED[:2]))
    assert not ok and "length 3 != 2" in rows["fp32"]["detail"]


def test_q8_is_reported_never_failed_and_top1_ignores_the_tail_of_a_ranking():
    tail_swapped = [RANKED[0], {"label": "NEUTRAL", "score": 0.25}, {"label": "NEGATIVE", "score": 0.15}]
    rows, ok = rows_by_dtype(recording(RANKED, RANKED), recording(RANKED, tail_swapped))
    assert ok and rows["q8"]["status"] == "report" and rows["q8"]["top1"] == 1
    flipped = [{"label": "NEGATIVE", "score": 0.5}, {"label": "POSITIVE", "score": 0.4}, RANKED[2]]
    rows, ok = rows_by_dtype(recording(RANKED, RANKED), recording(RANKED, flipped))
    assert ok and rows["q8"]["top1"] == 0


def test_bundle_or_dtype_on_one_side_only_fails():
    rec = recording(RANKED)
    missing = {**rec, "bundles": {}}
    _, ok = golden.compare(rec, missing, 1e-4)
    assert not ok
    rows, ok = rows_by_dtype(recording(RANKED, RANKED), recording(RANKED))
    assert ok and rows["q8"]["status"] == "absent"  # reported; only fp32 decides


def test_compare_limited_to_some_dtypes():
    rows, ok = golden.compare(recording(RANKED, RANKED), recording([], RANKED), 1e-4, ["q8"])
    assert ok and [r["dtype"] for r in rows] == ["q8"]


def test_arrays_and_images():
    a = golden.encode({"v": np.array([1.0, 2.0], np.float32), "n": np.int64(3)})
    b = golden.encode({"v": np.array([1.0, 2.00001], np.float32), "n": np.int64(3)})
    assert a["n"] == 3 and a["v"]["__ndarray__"]["shape"] == [2]
    assert golden.compare(recording(a), recording(b), 1e-4)[1]
    c = golden.encode({"v": np.array([1.0, 2.0], np.float32), "n": np.int64(4)})
    assert not golden.compare(recording(a), recording(c), 1e-4)[1]

    from PIL import Image

    base = np.full((4, 4), 100, np.uint8)
    img = golden.encode(Image.fromarray(base))
    off_by_one = golden.encode(Image.fromarray(base + np.eye(4, dtype=np.uint8)))
    off_by_two = golden.encode(Image.fromarray(base + 2 * np.eye(4, dtype=np.uint8)))
    assert img["__image__"]["mode"] == "L"
    assert golden.compare(recording(img), recording(off_by_one), 1e-4)[1]
    assert not golden.compare(recording(img), recording(off_by_two), 1e-4)[1]


def test_large_arrays_are_sampled():
    big = golden.encode(np.linspace(0, 1, golden.MAX_VALUES + 10, dtype=np.float32))
    assert "values" not in big["__ndarray__"] and len(big["__ndarray__"]["sample"]) == golden.SAMPLE


def test_record_on_a_tiny_bundle(tiny, tmp_path):
    built = tiny.get("distilbert-sst2")
    models = tmp_path / "models"
    models.mkdir()
    (models / built.name).symlink_to(built.bundle, target_is_directory=True)
    rec = golden.record(models, ["fp32", "q8", "q4"], threads=1, log=lambda _m: None)
    json.dumps(rec)  # JSON-able as written
    entry = rec["bundles"]["distilbert-sst2"]
    assert entry["task"] == "text-classification" and set(entry["dtypes"]) == {"fp32", "q8"}  # no q4 file
    cases = entry["dtypes"]["fp32"]["cases"]
    assert {"demo", "pair", "all-scores"} <= set(cases)
    assert len(cases["all-scores"]["output"]) == 2  # top_k=None: both labels
    again = golden.record(models, ["fp32", "q8"], threads=1, log=lambda _m: None)
    rows, ok = golden.compare(rec, again, 1e-4)
    assert ok and all(r["status"] in ("PASS", "report") for r in rows)
    assert golden.main(["record", str(models), str(tmp_path / "a.json"), "--dtypes", "fp32"]) == 0
    assert golden.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
