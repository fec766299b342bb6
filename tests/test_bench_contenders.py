"""The benchmark suite's bookkeeping: alternating rounds, ratio columns, the anchors table, skipped engines."""

from __future__ import annotations

import json
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


def test_padded_vocabulary_names_every_output_row_once():
    names = contenders.padded_vocabulary({"<s>": 0, "</s>": 2, "hello": 3, "beyond": 9}, 6)
    assert names == ["<s>", "<ct2-id-1>", "</s>", "hello", "<ct2-id-4>", "<ct2-id-5>"]
    assert len(set(names)) == len(names)


def test_seq2seq_time_ratios_per_call_or_per_token_when_lengths_differ():
    from benchmarks import bench_seq2seq

    rows = [
        {"contender": "edgetf-q8", "median_ms": 300.0, "new_tokens": 48},
        {"contender": "ctranslate2-int8", "median_ms": 100.0, "new_tokens": 24},
        {"contender": "transformers-fp32", "median_ms": 600.0, "new_tokens": 48},
        {"contender": "other", "skipped": "no venv"},
    ]
    ratios = {"vs_ctranslate2": "ctranslate2-int8", "vs_transformers": "transformers-fp32", "vs_other": "other"}
    bench_seq2seq.time_ratios(rows, "edgetf-q8", ratios)
    mine = rows[0]
    assert mine["vs_transformers"] == pytest.approx(0.5)
    assert mine["vs_ctranslate2"] == pytest.approx((300 / 48) / (100 / 24))
    assert mine["ratio_basis"] == {"vs_ctranslate2": "per token", "vs_transformers": "call"}
    assert "vs_other" not in mine
    # the suite's anchors table reads the seq2seq bench's edgetf-q8 rows as time ratios
    anchors = suite.anchors({"seq2seq": {"contenders": [{**mine, "model": "bench-t5-small"}]}})
    assert anchors == [
        {
            "family": "seq2seq",
            "model": "bench-t5-small",
            "vs_ctranslate2": mine["vs_ctranslate2"],
            "vs_transformers": 0.5,
        }
    ]


def test_seq2seq_contender_is_skipped_with_the_reason_without_its_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETF_BENCH_PYTHON", str(tmp_path / "missing" / "python"))
    result = contenders.seq2seq_spec(tmp_path / "ckpt", tmp_path / "job.json", 2, 1, tmp_path)
    assert "no contender venv" in result["skipped"]


def test_seq2seq_job_has_the_cut_input_ids_and_the_bundles_search_settings(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from benchmarks import bench_seq2seq
    from export.catalog import long_text

    words = sorted(set(long_text(4000).split()))
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", *words])}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "generation_config.json").write_text('{"no_repeat_ngram_size": 3, "length_penalty": 2.0}')
    path = bench_seq2seq.write_job(tmp_path, "summarization", 20, 4, 48, tmp_path)
    job = json.loads(path.read_text())
    assert job["input_ids"] == tokenizer.encode(long_text(400)).ids[:20]
    assert {k: v for k, v in job.items() if k != "input_ids"} == {
        "task": "summarization",
        "beams": 4,
        "tokens": 48,
        "no_repeat_ngram_size": 3,
        "length_penalty": 2.0,
    }
