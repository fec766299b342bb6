"""Export knowledge for the encoder text-classification family (BERT, DistilBERT, RoBERTa)."""

from __future__ import annotations

from typing import Any

from . import CheckContext, TaskExport, register
from .common import QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict


def check_text_classification(ctx: CheckContext) -> dict[str, Any]:
    def run_reference() -> list[list[dict[str, Any]]]:
        pipe = transformers_pipeline(ctx, "text-classification", truncation=True)
        return [pipe(text, top_k=None) for text in ctx.inputs]

    expected = reference(ctx, "text-classification", run_reference)
    pipe = edgetf_pipeline(ctx, "text-classification")
    got = [pipe(text, top_k=None) for text in ctx.inputs]
    max_diff, agree = 0.0, 0
    for ref, out in zip(expected, got):
        ref_scores = {d["label"]: d["score"] for d in ref}
        out_scores = {d["label"]: d["score"] for d in out}
        max_diff = max(max_diff, max(abs(ref_scores[k] - out_scores.get(k, float("inf"))) for k in ref_scores))
        agree += ref[0]["label"] == out[0]["label"]
    n = len(expected)
    return verdict(
        ctx, metric="label score", max_diff=max_diff, agreement=agree / max(n, 1), n=n, quant_max_diff=QUANT_MAX_DIFF
    )


register(TaskExport("text-classification", "text-classification", check_text_classification, parity_inputs="text"))
