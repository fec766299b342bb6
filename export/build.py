"""Export one catalog entry end to end: checkpoint -> ONNX -> dtypes -> verification -> bundle."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgetf.bundle import onnx_filename

from . import calibration, convert, decoder_graph, external_data, goldens, manifest, quantize, tiny
from .catalog import Entry
from .inputs import builtin
from .plan import ExportPlan, UnsupportedExport, make_plan
from .tasks import CheckContext, task_export
from .tasks.common import calibration_feeds

Log = Callable[[str], None]


@dataclass
class Result:
    name: str
    task: str
    status: str  # ok | failed | unavailable | unsupported
    detail: str = ""
    seconds: float = 0.0
    dtypes: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None


def checkpoint_dir(out: Path, name: str) -> Path:
    """Where ``--tiny`` keeps the random-weight checkpoint (the reference for tests and verification)."""
    return out / ".checkpoints" / name


def export_entry(
    entry: Entry,
    out: Path,
    *,
    tiny_model: bool,
    dtypes: tuple[str, ...] | None = None,
    target: str | None = None,
    verify: bool = True,
    log: Log = print,
) -> Result:
    """Export ``entry`` into ``out / entry.name``.

    The bundle is written to a hidden sibling folder and moved into place only when complete, so an
    error (a checkpoint optimum cannot trace, an interrupted run) never leaves a half-written bundle
    and never destroys the one already there. Raises UnsupportedExport (one line) for a checkpoint or
    task that cannot be exported, SourceUnavailable when the checkpoint cannot be had."""
    start = time.perf_counter()
    dtypes = tuple(dtypes or entry.dtypes)

    def step(label: str, t0: float) -> None:
        log(f"  {entry.name}: {label} ({time.perf_counter() - t0:.1f}s)")

    t0 = time.perf_counter()
    if tiny_model:
        ckpt = checkpoint_dir(out, entry.name)
        if ckpt.exists():
            shutil.rmtree(ckpt)
        tiny.build(entry, ckpt)
        source = {"id": entry.source, "revision": "tiny-random", "tiny": True, "checkpoint": str(ckpt.resolve())}
        step("built tiny random-weight checkpoint", t0)
    else:
        ckpt, revision = convert.resolve_source(entry.source)
        source = {"id": entry.source, "revision": revision, "tiny": False}
    plan = make_plan(ckpt, entry.task)
    if "qdq" in dtypes:
        try:
            quantize.check_qdq_task(entry.task, plan.components)
        except ValueError as exc:
            raise UnsupportedExport(f"{entry.name}: {exc}") from exc
    final = out / entry.name
    out.mkdir(parents=True, exist_ok=True)
    bundle = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=out))
    try:
        result = _write_bundle(entry, plan, ckpt, bundle, source, dtypes, target, verify, step)
        replace_folder(bundle, final)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return replace(result, seconds=time.perf_counter() - start, bundle=final)


def replace_folder(new: Path, final: Path) -> None:
    """Move the finished bundle ``new`` to ``final``, replacing a previous bundle there."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        new.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(final)


def _write_bundle(
    entry: Entry,
    plan: ExportPlan,
    ckpt: Path,
    bundle: Path,
    source: dict[str, Any],
    dtypes: tuple[str, ...],
    target: str | None,
    verify: bool,
    step: Callable[[str, float], None],
) -> Result:
    t0 = time.perf_counter()
    convert.export_onnx(plan, ckpt, bundle)
    fused = decoder_graph.fuse_bundle(plan.model_type, ckpt, bundle)  # GPT-2: the fused decoder graph
    spec = task_export(entry.task)
    components = plan.components
    for comp in components:  # weights beside the graph: onnxruntime memory-maps them
        external_data.externalize(bundle / onnx_filename(comp, "fp32"))
    step(f"exported ONNX with optimum ({plan.family.name} family, {plan.optimum_task})", t0)
    inputs = entry.parity_inputs(builtin(spec.parity_inputs)) if spec.parity_inputs else []

    reports: dict[str, Any] = {}
    shared_reference: dict[str, Any] = {}
    fp32_verified = verify and "fp32" in dtypes  # its check records the feeds the fp32 graph runs
    if (verify and not fp32_verified and any(d in quantize.EIGHT_BIT for d in dtypes)) or (
        "qdq" in dtypes and not fp32_verified
    ):
        # The ladder's sensitive levels, the random-weight gate and the qdq calibration need the feeds the
        # fp32 graph runs: without a verified fp32, one unreported fp32 pass records them (and the reference).
        t0 = time.perf_counter()
        spec.check(CheckContext(entry, ckpt, bundle, "fp32", inputs, shared_reference))
        step("calibration pass on the fp32 graph (fp32 not verified as a requested dtype)", t0)
    static_feeds: dict[str, Any] = {}
    if plan.quantize.get("static_conv") and any(d in quantize.EIGHT_BIT for d in dtypes):
        # the conv-static level calibrates activation ranges on the runtime's own preprocessing of the
        # built-in inputs (verified or not: unverified exports keep the first level, this one)
        t0 = time.perf_counter()
        count = calibration.COUNT["tiny" if source.get("tiny") else "full"]
        static_feeds = calibration.record(entry.task, bundle, count)
        step(f"calibration for static int8 convolutions ({count} built-in inputs)", t0)
    for dtype in sorted(dtypes, key=lambda d: d != "fp32"):  # fp32 first: the others derive from it
        t0 = time.perf_counter()
        if dtype in quantize.EIGHT_BIT:
            levels = quantize.ladder(calibration_feeds(shared_reference), static_feeds)
        else:
            levels = quantize.QDQ_LEVELS if dtype == "qdq" else ("all",)
        report: dict[str, Any] = {}
        for level in levels:
            recipe = {}
            for comp in components:
                src = bundle / onnx_filename(comp, "fp32")
                recipe[comp] = quantize.make_dtype(
                    src,
                    bundle / onnx_filename(comp, dtype),
                    dtype,
                    target=target,
                    level=level,
                    quant=plan.quantize,
                    default_ops=("MatMul",),
                    calibration=(
                        static_feeds if level == quantize.CONV_LEVEL else calibration_feeds(shared_reference)
                    ).get(comp),
                )
                if dtype != "fp32":
                    external_data.externalize(bundle / onnx_filename(comp, dtype))
            report = {"files": _dtype_files(bundle, components, dtype), "recipe": recipe}
            if not verify:
                break  # unverified: keep the first (default) recipe, not the ladder's last
            ctx = CheckContext(entry, ckpt, bundle, dtype, inputs, shared_reference)
            report["parity"] = spec.check(ctx)
            report["passed"] = bool(report["parity"]["passed"])
            if report["parity"].get("settled", report["passed"]):  # gate met with its headroom
                break
            if level != levels[-1]:
                step(f"{dtype} recipe level {level!r} not settled by its gate, trying the next level", t0)
        reports[dtype] = report
        parity = report.get("parity", {})
        verdict = "" if not verify else ("PASS" if report["passed"] else "FAIL")
        step(f"{dtype} {verdict} {_summary(parity)}".rstrip(), t0)

    passed = [d for d in dtypes if reports[d].get("passed", not verify)]
    default = next((d for d in ("q8", "int8", "uint8") if d in passed), "fp32")
    if verify:  # golden feeds + fp32 outputs for `python -m edgetf verify` on the user's machine
        goldens.record(bundle, list(dtypes), calibration_feeds(shared_reference, goldens.FEEDS_PER_COMPONENT))
    extra = {**plan.manifest_extra, "export": plan.describe(), **({"decoder_graph": fused} if fused else {})}
    onnx_files = [Path(f) for r in reports.values() for f in r["files"] if f.endswith(".onnx")]
    external_data.mark_in_config(bundle, [f.name for f in onnx_files if (bundle / f"{f}_data").is_file()])
    manifest.write(bundle, task=entry.task, source=source, dtypes=reports, default_dtype=default, extra=extra)
    failed = [d for d in dtypes if verify and not reports[d].get("passed")]
    status = "failed" if failed else "ok"
    detail = f"parity failed for {', '.join(failed)}" if failed else f"default dtype {default}"
    return Result(entry.name, entry.task, status, detail, 0.0, reports)


def _dtype_files(bundle: Path, components: tuple[str, ...], dtype: str) -> list[str]:
    """The graph files of a dtype and their ``_data`` weight files."""
    files = []
    for comp in components:
        rel = onnx_filename(comp, dtype)
        files += [rel, f"{rel}_data"] if (bundle / f"{rel}_data").is_file() else [rel]
    return files


def _summary(parity: dict[str, Any]) -> str:
    keys = ("metric", "max_diff", "agreement", "tolerance")
    parts = []
    for key in keys:
        if key in parity:
            value = parity[key]
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)
