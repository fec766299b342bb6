"""`python -m edgetf verify BUNDLE`: does this machine, with this onnxruntime and execution provider,
still give the answers the bundle gave at export?

The bundle carries golden feeds per ONNX component and the fp32 graph's outputs on them (``golden.npz``),
with a bound per dtype (``golden.json``, written by export/goldens.py). ``verify`` checks every file's
sha256 against edgetf.json, re-runs each dtype's graphs on the golden feeds and compares their first
output with the recorded one: relative L2 error (the gate) and top-1 agreement along the last axis
(shown). Exit status 1 when any file fails its checksum or any dtype exceeds its bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bundle import Bundle, onnx_filename
from .errors import BundleError, IntegrityError
from .session import SessionOptions, open_session

GOLDEN_JSON = "golden.json"
GOLDEN_NPZ = "golden.npz"
GOLDEN_FORMAT = 1


def npz_key(component: str, index: int, kind: str, name: str) -> str:
    return f"{component}|{index}|{kind}|{name}"


def relative_error(reference: np.ndarray, got: np.ndarray) -> float:
    ref, out = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if ref.shape != out.shape:
        return float("inf")
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(out - ref)) / norm if norm else float(np.linalg.norm(out))


def compare_dtype(
    root: Path,
    golden: dict[str, Any],
    arrays: dict[str, np.ndarray],
    dtype: str,
    *,
    device: str = "cpu",
    open_file: Any = None,
) -> dict[str, Any]:
    """Run ``dtype``'s graphs on the golden feeds: worst relative error and top-1 agreement of the first output."""
    worst, hits, total, feeds = 0.0, 0, 0, 0
    for component, spec in golden["components"].items():
        path = open_file(component, dtype) if open_file else Path(root) / onnx_filename(component, dtype)
        session = open_session(path, device, SessionOptions())
        for i in range(int(spec["feeds"])):
            ready = {name: arrays[npz_key(component, i, "in", name)] for name in spec["inputs"]}
            expected = arrays[npz_key(component, i, "out", spec["output"])]
            got = session.run(ready, [spec["output"]])[spec["output"]]
            worst = max(worst, relative_error(expected, got))
            if expected.ndim and expected.shape == got.shape and expected.shape[-1] > 1:
                hits += int((expected.argmax(-1) == got.argmax(-1)).sum())
                total += int(np.prod(expected.shape[:-1]))
            feeds += 1
    return {"rel_error": worst, "top1_agreement": hits / total if total else 1.0, "feeds": feeds}


def verify_bundle(path: str | Path, dtypes: list[str] | None = None, *, device: str = "cpu") -> dict[str, Any]:
    """Checksums of every listed file, then each dtype on the golden feeds against its bound."""
    bundle = Bundle.open(path, verify="none")  # sizes too are checked below, one failure line per file
    bundle.verify = "full"
    if bundle.manifest is None:
        raise BundleError(f"{bundle.root} has no edgetf.json: only bundles written by `python -m export` carry goldens")
    checksum_failures = []
    for rel in bundle.manifest["files"]:
        try:
            bundle.file(rel)
        except IntegrityError as exc:
            checksum_failures.append(str(exc))
    if not bundle.has(GOLDEN_JSON) or not bundle.has(GOLDEN_NPZ):
        raise BundleError(f"{bundle.root} carries no {GOLDEN_JSON}/{GOLDEN_NPZ}; re-export it to verify it")
    golden = bundle.read_json(GOLDEN_JSON)
    known = list(golden.get("dtypes", {}))
    wanted = dtypes or known
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise BundleError(f"{bundle.root} has no golden bounds for dtype(s) {unknown}; it has: {', '.join(known)}")
    results = {}
    if not checksum_failures:
        with np.load(bundle.file(GOLDEN_NPZ)) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for dtype in wanted:
            measured = compare_dtype(
                bundle.root, golden, arrays, dtype, device=device, open_file=lambda c, d: bundle.onnx(c, d)
            )
            bound = float(golden["dtypes"][dtype]["max_rel_error"])
            results[dtype] = {**measured, "max_rel_error": bound, "passed": measured["rel_error"] <= bound}
    passed = not checksum_failures and all(r["passed"] for r in results.values())
    return {"bundle": str(bundle.root), "checksum_failures": checksum_failures, "dtypes": results, "passed": passed}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['bundle']}:"]
    for failure in report["checksum_failures"]:
        lines.append(f"  CHECKSUM FAIL {failure}")
    for dtype, r in report["dtypes"].items():
        verdict = "PASS" if r["passed"] else "FAIL"
        lines.append(
            f"  {dtype:6} {verdict}  relative error {r['rel_error']:.2e} (bound {r['max_rel_error']:.2e}), "
            f"top-1 agreement {r['top1_agreement']:.3f} over {r['feeds']} golden feeds"
        )
    return "\n".join(lines)
