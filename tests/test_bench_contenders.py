"""The benchmark suite's bookkeeping: alternating rounds, ratio columns, the anchors table, skipped engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import common, contenders, suite


def test_run_rounds_alternates_and_takes_the_median_of_process_medians():
    calls: list[str] = []
    times = {"a": iter([10.0, 30.0, 20.0]), "b": iter([5.0, 5.0, 6.0])}

    def spawner(name):
        def spawn():
            calls.append(name)
            return {"median_ms": next(times[name])}

        return spawn

    rows = common.run_rounds({"a": spawner("a"), "b": spawner("b")}, rounds=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert rows["a"]["median_ms"] == 20.0
    assert rows["a"]["process_medians_ms"] == [10.0, 30.0, 20.0]
    assert rows["a"]["spread"] == pytest.approx(2.0)
    assert rows["b"]["spread"] == pytest.approx(0.2)


def test_run_rounds_does_not_retry_an_engine_that_cannot_run():
    calls = []

    def broken():
        calls.append(1)
        return {"error": "no venv", "skipped": "no venv"}

    rows = common.run_rounds({"x": broken}, rounds=4)
    assert len(calls) == 1
    assert rows["x"]["skipped"] == "no venv"


def test_add_ratios_divides_medians_and_leaves_missing_engines_out():
    rows = [
        {"contender": "edgetf-q8", "median_ms": 30.0},
        {"contender": "openvino-int8", "median_ms": 40.0},
        {"contender": "optimum-q8", "error": "boom"},
    ]
    common.add_ratios(rows, "edgetf-q8", {"vs_openvino_int8": "openvino-int8", "vs_optimum_q8": "optimum-q8"})
    assert rows[0]["vs_openvino_int8"] == pytest.approx(0.75)
    assert "vs_optimum_q8" not in rows[0]


def test_anchors_collects_edgetf_q8_rows_and_inverts_throughput_ratios():
    results = {
        "text": {"rows": [{"contender": "edgetf-q8", "vs_transformers": 0.3, "vs_openvino_int8": 1.2, "spread": 0.05}]},
        "generation": {"results": [{"contender": "edgetf-q8", "tokens_per_s": 88.0, "vs_transformers_fp32": 4.0}]},
        "speech": {"results": [{"contender": "edgetf-fp32", "model": "w", "vs_transformers": 0.9}]},
    }
    rows = suite.anchors(results)
    assert rows == [
        {"family": "text", "model": "—", "vs_transformers": 0.3, "vs_openvino_int8": 1.2, "spread": 0.05},
        {"family": "generation", "model": "—", "vs_transformers": 0.25},
    ]


def test_contenders_are_skipped_with_the_reason_without_their_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETF_BENCH_PYTHON", str(tmp_path / "missing" / "python"))
    specs = contenders.openvino_specs(tmp_path / "m.onnx", tmp_path / "f.npz", 2, 3, tmp_path)
    assert sorted(specs) == ["openvino-fp32", "openvino-int8"]
    result = specs["openvino-int8"]()
    assert "no contender venv" in result["skipped"]
    assert "bench_contenders_env.sh" in result["skipped"]


def test_suite_commands_run_every_anchor_family_at_real_size_and_quick_keeps_the_arch():
    full = suite.commands(None, quick=False)
    assert list(full) == list(suite.FAMILIES)
    for name, cmd in full.items():
        assert Path(cmd[1]).is_file(), name
        assert "--quick" not in cmd
    quick = suite.commands(["generation-llama", "serve"], quick=True)
    assert quick["generation-llama"][2:] == ["--arch", "llama", "--quick"]
    assert quick["serve"][1].endswith("bench_serve.py") and quick["serve"][2:] == []
