"""Golden outputs: record every bundle's outputs on fixed inputs on one machine, compare on another.

    python scripts/arm64_golden.py record MODELS_DIR OUT.json [--dtypes fp32 q8] [--threads 1]
    python scripts/arm64_golden.py compare HOST.json OTHER.json [--tol 1e-4] [--dtypes q8] [--summary S.json]
    python scripts/arm64_golden.py verify MODELS_DIR [--summary S.json]

`record` runs, for every bundle folder under MODELS_DIR (a subfolder with config.json, as
`python -m edgetf demo` finds them) and each dtype it has, ``edgetf.pipeline(None, folder)`` on
``pipe.demo_input()`` plus the few fixed extra inputs of its task (EXTRA_CASES), and writes the outputs
as JSON (arrays and images kept with their values). Nothing here is task-specific beyond EXTRA_CASES,
so a newly added task is covered by its demo input as soon as its bundles exist.

`compare` checks the second recording against the first and prints a table:

- fp32 must match: same structure, same strings/ints/bools (labels, tokens, generated text), floats
  within ``tol`` (``|a - b| <= tol * max(1, |a|, |b|)``), image pixels within 1 level (uint8 rounding).
  Any fp32 mismatch, or a bundle/dtype/input recorded on one side only, fails (exit 1).
- q8 (and other dtypes) are reported, never failed: int8 kernels differ across CPUs. "top-1" counts
  inputs whose answer is the same: every discrete leaf equal after cutting each ranked list (a list of
  dicts with a numeric "score", best first) to its first element.

`verify` runs `python -m edgetf verify` on every bundle under MODELS_DIR (checksums, then each dtype's
golden feeds against the bounds recorded at export) and exits 1 when any bundle fails.

Imports only edgetf, numpy and the standard library (it runs inside the emulated aarch64 venv).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
MAX_VALUES = 200_000  # arrays larger than this are recorded as statistics and an even sample
SAMPLE = 20_000

# A few fixed inputs beyond demo_input(), per task: (case name, input, call options).
EXTRA_CASES: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {
    "text-classification": [
        ("positive", "I love this movie, it was absolutely wonderful!", {}),
        ("unicode", "Café, naïve, Straße, 東京は日本の首都です。 Emoji 😀🎉👍🏽.", {}),
        ("pair", {"text": "The cat sat on the mat.", "text_pair": "A cat was sitting."}, {}),
        ("all-scores", "The weather in Paris is lovely in the spring.", {"top_k": None}),
        ("batch", ["good", "bad", ""], {}),
        ("long", " ".join(["a long sentence that goes on"] * 200), {}),
    ],
}


# ---------------------------------------------------------------------------------------------- encoding
def _array(arr: np.ndarray, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {kind: {"dtype": str(arr.dtype), "shape": list(arr.shape)}}
    flat = arr.reshape(-1)
    if flat.size <= MAX_VALUES:
        out[kind]["values"] = flat.tolist()
    else:  # too big for JSON: summary statistics and an evenly strided sample
        as_float = flat.astype(np.float64)
        idx = np.linspace(0, flat.size - 1, SAMPLE).astype(np.int64)
        out[kind]["sample"] = flat[idx].tolist()
        out[kind]["stats"] = [float(f(as_float)) for f in (np.mean, np.std, np.min, np.max)]
    return out


def encode(value: Any) -> Any:
    """Pipeline output -> JSON-able, keeping array and image values (unlike the CLI's summary)."""
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return _array(value, "__ndarray__")
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "mode") and hasattr(value, "size") and hasattr(value, "getbands"):  # PIL image
        rec = _array(np.asarray(value), "__image__")
        rec["__image__"]["mode"] = value.mode
        return rec
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"__unencodable__": type(value).__name__}


def digest(value: Any) -> str:
    """A short hash of an input, so both sides can prove they fed the same thing."""
    return hashlib.sha256(json.dumps(encode(value), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- record
def bundles(models: Path) -> list[Path]:
    if not models.is_dir():
        raise SystemExit(f"error: {models} is not a folder")
    return sorted(p for p in models.iterdir() if p.is_dir() and (p / "config.json").is_file())


def record(models: Path, dtypes: list[str], threads: int | None, log: Any = print) -> dict[str, Any]:
    import onnxruntime

    import edgetf
    from edgetf.errors import DtypeError, EdgetfError

    options = edgetf.SessionOptions(intra_op_threads=threads)
    result: dict[str, Any] = {
        "format": FORMAT,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "edgetf": str(Path(edgetf.__file__).parent),
        "threads": threads,
        "bundles": {},
    }
    folders = bundles(models)
    if not folders:
        raise SystemExit(f"error: no bundles under {models}")
    for folder in folders:
        entry: dict[str, Any] = {"dtypes": {}}
        result["bundles"][folder.name] = entry
        for dtype in dtypes:
            t0 = time.perf_counter()
            try:
                pipe = edgetf.pipeline(None, folder, dtype=dtype, session_options=options)
            except DtypeError:
                continue  # the bundle has no file for this dtype; recorded as absent
            except EdgetfError as exc:
                entry["dtypes"][dtype] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            entry["task"] = pipe.task
            cases = [("demo", pipe.demo_input(), {})] + EXTRA_CASES.get(pipe.task, [])
            # pipelines that sample (text generation) take a seed: the same seed draws the same numbers on
            # every machine (numpy's PCG64), so their outputs are comparable too
            seed = {"seed": 0} if "seed" in getattr(pipe, "options_accepted", {}) else {}
            outputs: dict[str, Any] = {}
            for name, inputs, case_kwargs in cases:
                kwargs = {**seed, **case_kwargs}
                rec: dict[str, Any] = {"input": digest(inputs), "options": encode(kwargs)}
                try:
                    rec["output"] = encode(pipe(inputs, **kwargs))
                except Exception as exc:  # recorded, and compared like an output: both sides must agree
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                outputs[name] = rec
            seconds = time.perf_counter() - t0
            entry["dtypes"][dtype] = {"cases": outputs, "seconds": round(seconds, 3)}
            log(f"  {folder.name} {dtype}: {len(outputs)} inputs in {seconds:.1f}s")
    return result


# ---------------------------------------------------------------------------------------------- compare
class Diff:
    """What one comparison found: float drift, pixel drift, and discrete mismatches (with paths)."""

    def __init__(self, tol: float):
        self.tol = tol
        self.max_abs = 0.0
        self.max_rel = 0.0  # |a-b| / max(1, |a|, |b|): what tol bounds
        self.max_pixel = 0.0
        self.mismatches: list[str] = []

    def mismatch(self, path: str, what: str) -> None:
        if len(self.mismatches) < 20:
            self.mismatches.append(f"{path or '/'}: {what}")
        else:
            self.mismatches.append("")  # counted, not shown

    def floats(self, a: float, b: float) -> None:
        if math.isnan(a) and math.isnan(b):
            return
        if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
            if a != b:
                self.max_abs = self.max_rel = math.inf
            return
        d = abs(a - b)
        self.max_abs = max(self.max_abs, d)
        self.max_rel = max(self.max_rel, d / max(1.0, abs(a), abs(b)))

    def walk(self, a: Any, b: Any, path: str = "") -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                self.mismatch(path, f"keys {sorted(a)} != {sorted(b)}")
                return
            for key in ("__ndarray__", "__image__"):
                if key in a:
                    self.arrays(a[key], b[key], f"{path}/{key}", image=key == "__image__")
                    return
            for k in a:
                self.walk(a[k], b[k], f"{path}/{k}")
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.mismatch(path, f"length {len(a)} != {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                self.walk(x, y, f"{path}/{i}")
        elif isinstance(a, float) and isinstance(b, float):
            self.floats(a, b)
        elif type(a) is not type(b) or a != b:
            self.mismatch(path, f"{a!r:.60} != {b!r:.60}")

    def arrays(self, a: dict[str, Any], b: dict[str, Any], path: str, image: bool) -> None:
        for key in ("dtype", "shape", "mode"):
            if a.get(key) != b.get(key):
                self.mismatch(path, f"{key} {a.get(key)} != {b.get(key)}")
                return
        if "values" in a and "values" in b:
            x, y = np.asarray(a["values"]), np.asarray(b["values"])
        elif "sample" in a and "sample" in b:
            x, y = np.asarray(a["sample"]), np.asarray(b["sample"])
            for u, v in zip(a["stats"], b["stats"]):
                self.floats(float(u), float(v))
        else:
            self.mismatch(path, "recorded in full on one side only")
            return
        if x.size == 0:
            return
        if image or np.issubdtype(np.dtype(a["dtype"]), np.floating):
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            nan_a, nan_b = np.isnan(xf), np.isnan(yf)
            if (nan_a != nan_b).any():
                self.mismatch(path, "NaN on one side only")
            ok = ~(nan_a | nan_b)
            if not ok.any():
                return
            d = np.abs(xf[ok] - yf[ok])
            if image:
                self.max_pixel = max(self.max_pixel, float(d.max()))
                if d.max() > 1:
                    self.mismatch(path, f"{int((d > 1).sum())} pixels differ by more than 1 (max {d.max():g})")
                return
            self.max_abs = max(self.max_abs, float(d.max()))
            scale = np.maximum(1.0, np.maximum(np.abs(xf[ok]), np.abs(yf[ok])))
            self.max_rel = max(self.max_rel, float((d / scale).max()))
        elif not np.array_equal(x, y):
            self.mismatch(path, f"{int((x != y).sum())} of {x.size} {a['dtype']} values differ")

    @property
    def exact(self) -> bool:
        return not self.mismatches

    @property
    def within_tol(self) -> bool:
        return self.exact and self.max_rel <= self.tol


def top1(value: Any) -> Any:
    """The discrete answer: ranked lists (dicts with a numeric "score", best first) cut to their first item."""
    if isinstance(value, dict):
        if "__ndarray__" in value or "__image__" in value:
            return None  # tensors carry no discrete answer
        return {k: top1(v) for k, v in value.items()}
    if isinstance(value, list):
        scores = [v.get("score") for v in value if isinstance(v, dict)]
        ranked = len(value) > 1 and len(scores) == len(value) and all(isinstance(s, (int, float)) for s in scores)
        if ranked and all(s1 >= s2 for s1, s2 in zip(scores, scores[1:])):
            value = value[:1]
        return [top1(v) for v in value]
    if isinstance(value, float):
        return None
    return value


def compare(
    host: dict[str, Any], other: dict[str, Any], tol: float, dtypes: list[str] | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Rows of the table, and whether the check passes (fp32 everywhere within tol). ``dtypes`` limits it."""
    rows: list[dict[str, Any]] = []
    ok = True
    names = sorted(set(host["bundles"]) | set(other["bundles"]))
    for name in names:
        hb, ob = host["bundles"].get(name), other["bundles"].get(name)
        if hb is None or ob is None:
            rows.append({"bundle": name, "dtype": "-", "status": "FAIL", "detail": "recorded on one side only"})
            ok = False
            continue
        recorded = set(hb["dtypes"]) | set(ob["dtypes"])
        for dtype in sorted(recorded & set(dtypes or recorded), key=lambda d: (d != "fp32", d)):
            row: dict[str, Any] = {"bundle": name, "task": hb.get("task", ob.get("task", "?")), "dtype": dtype}
            rows.append(row)
            hd, od = hb["dtypes"].get(dtype), ob["dtypes"].get(dtype)
            strict = dtype == "fp32"
            problem = None
            if hd is None or od is None:
                problem = "dtype recorded on one side only"
            elif "error" in hd or "error" in od:
                problem = f"could not load: {hd.get('error') or od.get('error')}"
            elif hd["cases"].keys() != od["cases"].keys():
                problem = f"different input sets {sorted(hd['cases'])} vs {sorted(od['cases'])}"
            if problem:  # fails the check for fp32; reported for the other dtypes
                row.update(status="FAIL" if strict else "absent", detail=problem)
                ok = ok and not strict
                continue
            diff = Diff(tol)
            agree = 0
            notes = []
            for case, hc in hd["cases"].items():
                oc = od["cases"][case]
                if hc["input"] != oc["input"]:
                    diff.mismatch(case, "inputs differ (demo_input not deterministic?)")
                    continue
                if ("error" in hc) != ("error" in oc) or hc.get("error") != oc.get("error"):
                    diff.mismatch(case, f"error {hc.get('error')!r:.80} vs {oc.get('error')!r:.80}")
                    continue
                if "error" in hc:
                    notes.append(f"{case}: both raised")
                    agree += 1
                    continue
                diff.walk(hc["output"], oc["output"], case)
                agree += top1(hc["output"]) == top1(oc["output"])
            n = len(hd["cases"])
            row.update(
                inputs=n,
                max_abs=diff.max_abs,
                max_rel=diff.max_rel,
                max_pixel=diff.max_pixel,
                top1=agree,
                mismatches=[m for m in diff.mismatches if m],
                host_seconds=hd.get("seconds"),
                other_seconds=od.get("seconds"),
            )
            if strict:
                row["status"] = "PASS" if diff.within_tol else "FAIL"
                ok = ok and diff.within_tol
            else:
                row["status"] = "report"
            if strict and diff.max_rel > tol:
                notes.insert(0, f"floats differ by up to {diff.max_rel:.2e} (> {tol:g})")
            shown = [m for m in diff.mismatches if m][:3]
            more = len(diff.mismatches) - len(shown)
            row["detail"] = "; ".join(shown + notes) + (f" (+{more} more)" if more > 0 else "")
    return rows, ok


def table(rows: list[dict[str, Any]], host: dict[str, Any], other: dict[str, Any], tol: float) -> str:
    def side(rec: dict[str, Any]) -> str:
        versions = f"python {rec['python']}, onnxruntime {rec['onnxruntime']}, numpy {rec['numpy']}"
        return f"{rec['machine']} ({versions}; edgetf from {rec.get('edgetf', '?')})"

    lines = [
        f"reference: {side(host)}",
        f"compared:  {side(other)}",
        f"fp32: floats within {tol:g} (relative above 1), strings/labels/structure exact; "
        "other dtypes: reported (top-1 = same discrete answer)",
        "",
        "| bundle | task | dtype | inputs | top-1 agree | max abs diff | result | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "inputs" in r:
            lines.append(
                f"| {r['bundle']} | {r['task']} | {r['dtype']} | {r['inputs']} | {r['top1']}/{r['inputs']} "
                f"| {r['max_abs']:.2e} | {r['status']} | {r['detail'][:160]} |"
            )
        else:
            lines.append(
                f"| {r['bundle']} | {r.get('task', '?')} | {r['dtype']} | - | - | - | {r['status']} | {r['detail']} |"
            )
    return "\n".join(lines)


def verify_all(models: Path, log: Any = print) -> dict[str, Any]:
    """`edgetf verify` (edgetf.verify.verify_bundle) on every bundle under ``models``."""
    from edgetf.errors import EdgetfError
    from edgetf.verify import format_report, verify_bundle

    reports = {}
    for folder in bundles(models):
        try:
            report = verify_bundle(folder)
            log(format_report(report))
        except EdgetfError as exc:  # no goldens (older bundle) or an unreadable one: a failure, said in a line
            report = {"bundle": str(folder), "passed": False, "error": str(exc), "dtypes": {}}
            log(f"{folder}:\n  FAIL {exc}")
        reports[folder.name] = report
    passed = sum(r["passed"] for r in reports.values())
    log(f"\nedgetf verify on {platform.machine()}: {passed}/{len(reports)} bundles pass")
    return {"machine": platform.machine(), "passed": passed == len(reports) > 0, "bundles": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arm64_golden.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every bundle on its fixed inputs and write the outputs as JSON")
    rec.add_argument("models")
    rec.add_argument("out")
    rec.add_argument("--dtypes", nargs="+", default=["fp32", "q8"])
    rec.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: same work split)")
    cmp = sub.add_parser("compare", help="compare a recording against a reference recording")
    cmp.add_argument("reference")
    cmp.add_argument("other")
    cmp.add_argument("--tol", type=float, default=1e-4)
    cmp.add_argument("--dtypes", nargs="+", help="compare only these dtypes (default: every dtype recorded)")
    cmp.add_argument("--summary", help="also write the rows as JSON here")
    ver = sub.add_parser("verify", help="`python -m edgetf verify` on every bundle; exit 1 if any fails")
    ver.add_argument("models")
    ver.add_argument("--summary", help="also write the per-bundle reports as JSON here")
    args = parser.parse_args(argv)
    if args.command == "verify":
        result = verify_all(Path(args.models), log=lambda m: print(m, flush=True))
        if args.summary:
            Path(args.summary).write_text(json.dumps(result, indent=1))
        return 0 if result["passed"] else 1
    if args.command == "record":
        print(f"recording on {platform.machine()}: {args.models} -> {args.out}", flush=True)
        data = record(Path(args.models), args.dtypes, args.threads, log=lambda m: print(m, flush=True))
        Path(args.out).write_text(json.dumps(data, ensure_ascii=False))
        return 0
    host = json.loads(Path(args.reference).read_text(encoding="utf-8"))
    other = json.loads(Path(args.other).read_text(encoding="utf-8"))
    rows, ok = compare(host, other, args.tol, args.dtypes)
    print(table(rows, host, other, args.tol))
    if args.summary:
        Path(args.summary).write_text(json.dumps({"ok": ok, "tol": args.tol, "rows": rows}, indent=1))
    fp32 = [r for r in rows if r["dtype"] in ("fp32", "-")]
    passed = sum(r["status"] == "PASS" for r in fp32)
    verdict = f"fp32 {'matches' if ok else 'DIFFERS'}: {passed}/{len(fp32)} bundles within {args.tol:g}" if fp32 else ""
    reported = [r for r in rows if r["status"] == "report"]
    agree, total = sum(r["top1"] for r in reported), sum(r["inputs"] for r in reported)
    q8 = f"other dtypes: top-1 agreement {agree}/{total} inputs" if reported else ""
    print("\n" + "; ".join(x for x in (verdict, q8) if x))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
