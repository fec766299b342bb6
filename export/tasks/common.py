"""Helpers shared by the parity checks: reference pipelines, score comparison, verdicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import CheckContext

FP32_TOLERANCE = 1e-4
QUANT_MIN_AGREEMENT = 0.9
QUANT_MAX_DIFF = 0.1  # quantized scores/probabilities may drift this much at worst


def reference(ctx: CheckContext, key: str, make: Callable[[], Any]) -> Any:
    """Compute the reference outputs once per entry (shared by every dtype's check)."""
    if key not in ctx.reference_cache:
        ctx.reference_cache[key] = make()
    return ctx.reference_cache[key]


def transformers_pipeline(ctx: CheckContext, task: str, **kwargs: Any) -> Any:
    import transformers

    return transformers.pipeline(task, model=str(ctx.checkpoint), device="cpu", **kwargs)


def edgetf_pipeline(ctx: CheckContext, task: str, **kwargs: Any) -> Any:
    import edgetf

    return edgetf.pipeline(task, ctx.bundle, dtype=ctx.dtype, verify="none", **kwargs)


def verdict(
    ctx: CheckContext,
    *,
    metric: str,
    max_diff: float,
    agreement: float,
    n: int,
    extra: dict[str, Any] | None = None,
    quant_max_diff: float | None = None,
) -> dict[str, Any]:
    """fp32 must match within FP32_TOLERANCE; other dtypes must agree on the top answer often enough.

    ``quant_max_diff`` bounds the worst drift of quantized outputs too; checks whose ``max_diff`` is a
    probability pass QUANT_MAX_DIFF, checks measuring logits/boxes/depth rely on agreement alone.
    The catalog's ``parity`` table may override each (min_agreement, fp32_tolerance, quant_max_diff)."""
    min_agreement = float(ctx.entry.parity.get("min_agreement", QUANT_MIN_AGREEMENT))
    if ctx.dtype == "fp32":
        tolerance = float(ctx.entry.parity.get("fp32_tolerance", FP32_TOLERANCE))
        passed = max_diff <= tolerance and agreement == 1.0
        tol: Any = {"max_diff": tolerance, "agreement": 1.0}
    else:
        bound = ctx.entry.parity.get("quant_max_diff", quant_max_diff)
        passed = agreement >= min_agreement and (bound is None or max_diff <= float(bound))
        tol = {"agreement": min_agreement} if bound is None else {"agreement": min_agreement, "max_diff": float(bound)}
    report = {
        "metric": metric,
        "max_diff": float(max_diff),
        "agreement": float(agreement),
        "n": n,
        "tolerance": tol,
        "passed": bool(passed),
    }
    report.update(extra or {})
    return report
