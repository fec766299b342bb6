"""Helpers shared by the parity checks: reference pipelines, recorded calibration feeds, verdicts.

Thresholds live in export/gates.py; :func:`verdict` asks it which gate applies (fp32, trained weights
per task, or random weights judged on logit closeness) and records the judgement in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import gates
from . import CheckContext

FP32_TOLERANCE = gates.FP32.rules[0].value
QUANT_MAX_DIFF = 0.1  # kept for the checks' signatures; the trained gates in export/gates.py decide
CALIBRATION_KEY = "calibration-feeds"
MAX_RECORDED_FEEDS = 256  # per component; calibration_feeds() samples from these


def reference(ctx: CheckContext, key: str, make: Callable[[], Any]) -> Any:
    """Compute the reference outputs once per entry (shared by every dtype's check)."""
    if key not in ctx.reference_cache:
        ctx.reference_cache[key] = make()
    return ctx.reference_cache[key]


def transformers_pipeline(ctx: CheckContext, task: str, **kwargs: Any) -> Any:
    import transformers

    return transformers.pipeline(task, model=str(ctx.checkpoint), device="cpu", **kwargs)


def edgetf_pipeline(ctx: CheckContext, task: str, **kwargs: Any) -> Any:
    """The edgetf pipeline on the bundle's ``ctx.dtype`` files. The first pipeline of an entry records the
    feeds its sessions run (the calibration inputs of the quantization ladder and of the random-weight
    gate), so every dtype is later compared on exactly the same graph inputs."""
    import edgetf

    pipe = edgetf.pipeline(task, ctx.bundle, dtype=ctx.dtype, verify="none", **kwargs)
    if CALIBRATION_KEY not in ctx.reference_cache:
        ctx.reference_cache[CALIBRATION_KEY] = {}
        record_feeds(pipe, ctx.reference_cache[CALIBRATION_KEY])
    return pipe


def record_feeds(pipe: Any, store: dict[str, list[dict[str, Any]]]) -> None:
    """Keep a copy of each feed ``pipe``'s sessions run, per component (at most MAX_RECORDED_FEEDS)."""
    import numpy as np

    open_session = pipe.session

    def session(component: str | None = None) -> Any:
        sess = open_session(component)
        name = component or pipe.main_component
        if getattr(sess, "edgetf_recording", False):
            return sess
        run = sess.run

        def recording_run(feeds: Any, outputs: Any = None) -> Any:
            kept = store.setdefault(name, [])
            if len(kept) < MAX_RECORDED_FEEDS:
                kept.append({k: np.array(feeds[k], dtype=sess.input_dtype(k)) for k in sess.inputs if k in feeds})
            return run(feeds, outputs)

        sess.run = recording_run
        sess.edgetf_recording = True
        return sess

    pipe.session = session


def calibration_feeds(cache: dict[str, Any], per_component: int = 16) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_component`` recorded feeds per component, spread evenly over what was recorded."""
    out = {}
    for component, feeds in cache.get(CALIBRATION_KEY, {}).items():
        step = max(1, len(feeds) // per_component)
        out[component] = feeds[::step][:per_component]
    return out


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
    """The check's measurements judged by the gate export/gates.py names for this task, dtype and kind of
    weights. Random-weight quantized files are measured here too: their outputs against the fp32 file's
    on the recorded feeds. ``quant_max_diff`` is accepted for older callers and ignored (gates decide);
    the catalog's ``parity.fp32_tolerance`` still widens the fp32 gate for an entry."""
    del quant_max_diff
    weights = gates.weights_of(ctx.checkpoint)
    gate = gates.gate_for(ctx.entry.task, ctx.dtype, weights)
    report: dict[str, Any] = {
        "metric": metric,
        "max_diff": float(max_diff),
        "agreement": float(agreement),
        "n": n,
        "weights": weights,
    }
    report.update(extra or {})
    if ctx.dtype != "fp32" and weights == "random":
        report.update(gates.output_closeness(ctx.bundle, ctx.dtype, calibration_feeds(ctx.reference_cache)))
    if ctx.dtype == "fp32" and "fp32_tolerance" in ctx.entry.parity:
        widened = gates.Rule("max_diff", "<=", float(ctx.entry.parity["fp32_tolerance"]), "catalog entry")
        gate = gates.Gate("fp32", (widened, *gate.rules[1:]))
    report.update(gates.judge(gate, report))
    return report
