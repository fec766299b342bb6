"""export/gates.py: every threshold in one table, random vs trained weights, and what a verdict records."""

from __future__ import annotations

import pytest

from export import gates


def test_every_rule_says_why_and_compares_one_way():
    rows = gates.table()
    assert len(rows) >= 30
    for row in rows:
        assert row["op"] in (">=", "<=") and len(row["why"]) > 15, row


def test_random_weights_are_judged_on_logit_closeness_not_argmax():
    gate = gates.gate_for("question-answering", "q8", "random")
    near_tie = {"agreement": 0.5, "max_diff": 0.9, "output_rel_error": 0.04, "feeds_compared": 16}
    assert gates.judge(gate, near_tie)["passed"]  # labels flipped by a near-tie do not fail a random build
    far = dict(near_tie, output_rel_error=0.6)
    assert gates.judge(gate, far)["failed_rules"] == ["output_rel_error <= 0.25"]
    assert not gates.judge(gate, dict(near_tie, feeds_compared=0))["passed"]  # nothing compared: no pass


@pytest.mark.parametrize(
    ("task", "report", "passed"),
    [
        ("text-classification", {"agreement": 0.99, "max_diff": 0.05}, True),
        ("text-classification", {"agreement": 0.957, "max_diff": 0.054}, False),  # README's old real-weight q8
        ("feature-extraction", {"min_cosine": 0.985}, False),
        ("feature-extraction", {"min_cosine": 0.991}, True),
        ("translation_en_to_fr", {"top1_agreement_vs_fp32": 0.99, "exact_match": 0.9}, True),
        ("object-detection", {"label_agreement": 0.99}, False),  # box IoU not measured is not passed
    ],
)
def test_trained_gates(task, report, passed):
    assert gates.judge(gates.gate_for(task, "q8", "trained"), report)["passed"] is passed


def test_ladder_headroom_for_embeddings():
    gate = gates.gate_for("feature-extraction", "q8", "trained")
    verdict = gates.judge(gate, {"min_cosine": 0.991})
    assert verdict["passed"] and not verdict["settled"]  # passes, but the ladder tries the next recipe
    assert gates.judge(gate, {"min_cosine": 0.994})["settled"]


def test_fp32_gate_is_exact_structure_and_tight_numbers():
    gate = gates.gate_for("fill-mask", "fp32", "random")
    assert gates.judge(gate, {"max_diff": 5e-6, "agreement": 1.0})["passed"]
    assert not gates.judge(gate, {"max_diff": 5e-6, "agreement": 0.99})["passed"]


def test_unknown_task_names_the_gated_ones():
    with pytest.raises(KeyError, match="text-classification"):
        gates.gate_for("no-such-task", "q8", "trained")


def test_weights_of_reads_the_tiny_marker(tmp_path):
    from export.tiny import mark_random

    assert gates.weights_of(tmp_path) == "trained"
    mark_random(tmp_path)
    assert gates.weights_of(tmp_path) == "random"
