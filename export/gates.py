"""Every verification threshold export applies, per task and per kind of weights, with the reason.

A check in export/tasks measures (fills a report: ``agreement``, ``max_diff`` and task keys such as
``min_cosine``); a gate here decides. Three kinds of gate:

* **fp32** (every task): the exported graph must reproduce the reference pipeline.
* **trained weights, quantized dtypes**: the measure a user would notice, per task (labels, answers,
  embeddings, generated tokens, boxes ...). The recipe ladder in export/quantize.py stops at the first
  recipe that meets the gate's ``ladder`` rules: the same rules with headroom, so the gate still holds
  on inputs the verification never saw.
* **random weights, quantized dtypes** (tiny builds, checkpoints marked by export/tiny.py): random heads
  put the top two labels / tokens within a hair of each other, so an argmax agreement is a coin toss
  and says nothing about the quantized file. They are judged on logit-level closeness instead: the
  relative L2 error of the quantized graph's outputs against the fp32 graph's on the same feeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RANDOM_MARKER = "edgetf-random-weights.json"  # written into a checkpoint folder by export/tiny.py
MIN_INPUTS = 50  # verification inputs per modality (export/inputs.py); fewer make 99% meaningless


@dataclass(frozen=True)
class Rule:
    key: str  # a key of the check's report
    op: str  # ">=" or "<="
    value: float
    why: str

    def holds(self, report: Mapping[str, Any]) -> bool:
        value = report.get(self.key)
        if not isinstance(value, (int, float)) or math.isnan(float(value)):
            return False  # not measured is not passed
        return float(value) >= self.value if self.op == ">=" else float(value) <= self.value

    def describe(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Gate:
    mode: str  # fp32 | trained | random
    rules: tuple[Rule, ...]
    ladder: tuple[Rule, ...] = ()  # extra headroom the quantization ladder aims for (trained weights)


def _rule(key: str, op: str, value: float, why: str) -> Rule:
    return Rule(key, op, value, why)


FP32 = Gate(
    "fp32",
    (
        _rule("max_diff", "<=", 1e-4, "the same float graph: only summation order differs (seen <= 1e-5)"),
        _rule("agreement", ">=", 1.0, "identical labels, spans, texts and structure on every input"),
    ),
)

RANDOM_MAX_REL_ERROR = 0.25
RANDOM = Gate(
    "random",
    (
        _rule(
            "output_rel_error",
            "<=",
            RANDOM_MAX_REL_ERROR,
            "random weights: outputs within 25% (relative L2) of the fp32 graph's on the same feeds; q8 of "
            "the tiny builds measured 3-8% (QA start/end logits the most), a graph from other weights ~100%",
        ),
        _rule("feeds_compared", ">=", 1, "closeness is measured on the feeds the check's pipeline ran"),
    ),
)

_LABELS = _rule("agreement", ">=", 0.99, "a user compares labels: at most 1 in 100 inputs may change its top label")
_SCORES = _rule("max_diff", "<=", 0.05, "scores shown to users (probabilities) may move by 0.05 at most")
_COSINE = _rule(
    "min_cosine", ">=", 0.99, "embeddings feed nearest-neighbour search: 0.99 keeps rankings of distinct texts"
)
_COSINE_HEADROOM = _rule(
    "min_cosine",
    ">=",
    0.993,
    "all-MiniLM-L6-v2 on the 57 built-in texts vs 68 unseen sentences: ffn-blockwise 0.9931 held 0.9956, "
    "FFN outputs float 0.9892 held 0.9936, level all 0.9728 held 0.9842",
)
_GENERATION = (
    _rule(
        "top1_agreement_vs_fp32",
        ">=",
        0.98,
        "teacher-forced next-token top-1 vs fp32: 2% flips still let greedy text match mostly",
    ),
    _rule("exact_match", ">=", 0.8, "share of whole generated outputs identical to the reference"),
)

TRAINED: dict[str, Gate] = {
    "text-classification": Gate("trained", (_LABELS, _SCORES)),
    "audio-classification": Gate("trained", (_LABELS, _SCORES)),
    "image-classification": Gate("trained", (_LABELS, _SCORES)),
    "token-classification": Gate("trained", (_LABELS, _SCORES)),
    "fill-mask": Gate(
        "trained",
        (
            _rule("agreement", ">=", 0.95, "top-1 over a whole vocabulary: synonyms sit within 1% of each other"),
            _SCORES,
        ),
    ),
    "question-answering": Gate(
        "trained",
        (
            _rule("agreement", ">=", 0.95, "the same top answer span (start and end) as the reference"),
            _rule(
                "top_answer_in_reference_top3",
                ">=",
                0.99,
                "a changed top span must still be one of the reference's three best",
            ),
        ),
    ),
    "feature-extraction": Gate("trained", (_COSINE,), ladder=(_COSINE_HEADROOM,)),
    "text-generation": Gate("trained", _GENERATION),
    "text2text-generation": Gate("trained", _GENERATION),
    "summarization": Gate("trained", _GENERATION),
    "translation": Gate("trained", _GENERATION),
    "automatic-speech-recognition": Gate(
        "trained",
        (
            _rule("token_agreement", ">=", 0.98, "decoded tokens (CTC frames / Whisper ids) vs fp32"),
            _rule("text_equality", ">=", 0.8, "share of transcripts identical to the reference"),
        ),
    ),
    "object-detection": Gate(
        "trained",
        (
            _rule("label_agreement", ">=", 0.95, "same label per query, ranked by score"),
            _rule("mean_box_iou", ">=", 0.9, "matched boxes overlap the reference's by 90% on average"),
        ),
    ),
    "image-segmentation": Gate(
        "trained",
        (
            _rule("class_agreement", ">=", 0.95, "same class per query"),
            _rule("mean_mask_iou", ">=", 0.9, "masks overlap the reference's by 90% on average"),
        ),
    ),
    "depth-estimation": Gate(
        "trained",
        (_rule("max_relative_error", "<=", 0.05, "depth error within 5% of the map's own variation"),),
    ),
}


def weights_of(checkpoint: Path | None) -> str:
    """``random`` for checkpoints marked by export/tiny.py, else ``trained``."""
    return "random" if checkpoint is not None and (Path(checkpoint) / RANDOM_MARKER).is_file() else "trained"


def gate_for(task: str, dtype: str, weights: str) -> Gate:
    if dtype == "fp32":
        return FP32
    if weights == "random":
        return RANDOM
    base = task.split("_", 1)[0]  # translation_en_to_fr -> translation
    if base not in TRAINED:
        raise KeyError(f"no quantization gate for task {task!r}; gated tasks: {', '.join(sorted(TRAINED))}")
    return TRAINED[base]


def judge(gate: Gate, report: Mapping[str, Any]) -> dict[str, Any]:
    """What the gate makes of a report: passed, which rules failed, and whether the ladder may stop."""
    failed = [r.describe() for r in gate.rules if not r.holds(report)]
    short = [r.describe() for r in gate.ladder if not r.holds(report)]
    return {
        "gate": gate.mode,
        "tolerance": {r.key: r.value for r in gate.rules},
        "passed": not failed,
        "failed_rules": failed,
        "settled": not failed and not short,  # the recipe ladder stops here
    }


def table() -> list[dict[str, Any]]:
    """Every gate as rows (task, dtype kind, rule, why) — what README's table is made from."""
    rows = [{"task": "*", "gate": "fp32", **asdict(r)} for r in FP32.rules]
    rows += [{"task": "*", "gate": "random", **asdict(r)} for r in RANDOM.rules]
    for task, gate in TRAINED.items():
        rows += [{"task": task, "gate": "trained", **asdict(r)} for r in gate.rules]
        rows += [{"task": task, "gate": "ladder", **asdict(r)} for r in gate.ladder]
    return rows


def relative_error(reference: Any, got: Any) -> float:
    import numpy as np

    ref, out = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(out - ref)) / norm if norm else float(np.linalg.norm(out))


def output_closeness(bundle: Path, dtype: str, feeds: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Run each component's fp32 and ``dtype`` graphs on the same recorded feeds; the worst relative L2
    error of any floating output (logits, hidden states, boxes, KV) and the number of feeds compared."""
    import numpy as np
    import onnxruntime as ort

    from edgetf.bundle import onnx_filename

    worst, compared = 0.0, 0
    for component, items in feeds.items():
        fp32 = ort.InferenceSession(str(bundle / onnx_filename(component, "fp32")), providers=["CPUExecutionProvider"])
        quant = ort.InferenceSession(str(bundle / onnx_filename(component, dtype)), providers=["CPUExecutionProvider"])
        declared = {i.name for i in fp32.get_inputs()}
        for feed in items:
            ready = {k: v for k, v in feed.items() if k in declared}
            for ref, got in zip(fp32.run(None, ready), quant.run(None, ready)):
                if np.issubdtype(np.asarray(ref).dtype, np.floating) and np.asarray(ref).size:
                    worst = max(worst, relative_error(ref, got))
            compared += 1
    return {"output_rel_error": worst, "feeds_compared": compared}


def main() -> None:  # python -m export.gates: print the table
    print(json.dumps(table(), indent=1))


if __name__ == "__main__":
    main()
