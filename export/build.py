"""Export one catalog entry end to end: checkpoint -> ONNX -> dtypes -> verification -> bundle."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetf.bundle import onnx_filename

from . import convert, external_data, goldens, manifest, quantize, tiny
from .catalog import Entry
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
    start = time.perf_counter()
    bundle = out / entry.name
    target = target or entry.quantize.get("target")  # --target beats the catalog's per-entry preset
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
    if bundle.exists():
        shutil.rmtree(bundle)
    t0 = time.perf_counter()
    convert.export_onnx(entry, ckpt, bundle)
    spec = task_export(entry.task)
    components = convert.components_for(entry)
    for comp in components:  # weights beside the graph: onnxruntime memory-maps them
        external_data.externalize(bundle / onnx_filename(comp, "fp32"))
    step("exported ONNX with optimum", t0)

    reports: dict[str, Any] = {}
    shared_reference: dict[str, Any] = {}
    for dtype in sorted(dtypes, key=lambda d: d != "fp32"):  # fp32 first: the others derive from it
        t0 = time.perf_counter()
        levels = quantize.ladder(calibration_feeds(shared_reference)) if dtype in ("q8", "int8", "uint8") else ("all",)
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
                    quant=entry.quantize,
                    default_ops=spec.quant_ops,
                    calibration=calibration_feeds(shared_reference).get(comp),
                )
                if dtype != "fp32":
                    external_data.externalize(bundle / onnx_filename(comp, dtype))
            report = {"files": _dtype_files(bundle, components, dtype), "recipe": recipe}
            if not verify:
                break  # unverified: keep the first (default) recipe, not the ladder's last
            if verify:
                ctx = CheckContext(entry, ckpt, bundle, dtype, entry.parity_inputs(), shared_reference)
                report["parity"] = spec.check(ctx)
                report["passed"] = bool(report["parity"]["passed"])
                if report["parity"].get("settled", report["passed"]):  # gate met with its headroom
                    break
                if level != levels[-1]:
                    log(f"  {entry.name}: {dtype} recipe level {level!r} failed parity, trying the next level")
        reports[dtype] = report
        parity = report.get("parity", {})
        verdict = "" if not verify else ("PASS" if report["passed"] else "FAIL")
        step(f"{dtype} {verdict} {_summary(parity)}".rstrip(), t0)

    passed = [d for d in dtypes if reports[d].get("passed", not verify)]
    default = next((d for d in ("q8", "int8", "uint8") if d in passed), "fp32")
    if verify:  # golden feeds + fp32 outputs for `python -m edgetf verify` on the user's machine
        goldens.record(bundle, list(dtypes), calibration_feeds(shared_reference, goldens.FEEDS_PER_COMPONENT))
    extra = spec.manifest_extra(entry, ckpt) if spec.manifest_extra else {}
    onnx_files = [Path(f) for r in reports.values() for f in r["files"] if f.endswith(".onnx")]
    external_data.mark_in_config(bundle, [f.name for f in onnx_files if (bundle / f"{f}_data").is_file()])
    manifest.write(bundle, task=entry.task, source=source, dtypes=reports, default_dtype=default, extra=extra)
    failed = [d for d in dtypes if verify and not reports[d].get("passed")]
    status = "failed" if failed else "ok"
    detail = f"parity failed for {', '.join(failed)}" if failed else f"default dtype {default}"
    return Result(entry.name, entry.task, status, detail, time.perf_counter() - start, reports, bundle)


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
