"""Footprint of every bundle under a folder: on-disk size per dtype and peak RSS of one run.

    python benchmarks/footprint.py [MODELS_DIR] [--dtypes fp32 q8] [--threads 4] [--json out.json]

For each bundle (a subfolder with config.json) and each dtype it has, a fresh Python process loads
the bundle with ``edgetf.pipeline(None, folder, dtype=...)`` and runs one ``pipe.demo_input()``; its
peak resident set size (``ru_maxrss``) is what a device needs to have free for that model. A
baseline process that only imports edgetf and onnxruntime is measured too, so the model's own share
is ``peak - baseline``. Sizes: the ONNX files of the dtype (all components) plus the shared config
and tokenizer files. Prints a markdown table, then writes JSON (to --json, default
benchmarks/results/footprint.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgetf.bundle import DTYPE_SUFFIX  # noqa: E402

# Runs in a fresh process: argv = [folder, dtype or "", threads or ""]; prints one JSON line.
CHILD = r"""
import json, resource, sys, time
def peak_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
folder, dtype, threads = sys.argv[1:4]
t0 = time.perf_counter()
import onnxruntime, edgetf
out = {"import_peak_mb": peak_mb(), "import_s": time.perf_counter() - t0}
if folder:
    options = edgetf.SessionOptions(intra_op_threads=int(threads) if threads else None)
    t0 = time.perf_counter()
    pipe = edgetf.pipeline(None, folder, dtype=dtype, session_options=options)
    sample = pipe.demo_input()
    pipe(sample)
    out.update(task=pipe.task, first_call_s=time.perf_counter() - t0)
out["peak_mb"] = peak_mb()
print(json.dumps(out))
"""


def measure(folder: Path | None, dtype: str, threads: int | None) -> dict[str, Any]:
    args = [sys.executable, "-c", CHILD, str(folder or ""), dtype, str(threads or "")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dtype_files(bundle: Path) -> dict[str, list[Path]]:
    """dtype -> its ONNX files: from edgetf.json when present, else by file-name suffix."""
    manifest_path = bundle / "edgetf.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        table = {d: [bundle / f for f in r.get("files", [])] for d, r in manifest.get("dtypes", {}).items()}
        return {d: files for d, files in table.items() if files and all(f.is_file() for f in files)}
    found: dict[str, list[Path]] = {}
    suffixes = sorted(DTYPE_SUFFIX.items(), key=lambda kv: -len(kv[1]))  # longest suffix first
    for path in sorted((bundle / "onnx").glob("*.onnx")):
        data = path.with_name(path.name + "_data")
        for dtype, suffix in suffixes:
            if not suffix or path.stem.endswith(suffix):
                found.setdefault(dtype, []).extend([path, data] if data.is_file() else [path])
                break
    return found


def shared_size(bundle: Path) -> int:
    """Everything outside onnx/ (configs, tokenizer, manifest)."""
    return sum(p.stat().st_size for p in bundle.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="?", default="models")
    parser.add_argument("--dtypes", nargs="+", help="only these dtypes (default: every dtype a bundle has)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "footprint.json"))
    args = parser.parse_args(argv)
    models = Path(args.models)
    folders = []
    if models.is_dir():
        folders = sorted(p for p in models.iterdir() if p.is_dir() and (p / "config.json").is_file())
    if not folders:
        print(f"no bundles under {models}; run `python -m export all --tiny --out {models}` first", file=sys.stderr)
        return 1
    baseline = measure(None, "", args.threads)
    if "error" in baseline:
        print(f"cannot import edgetf in a fresh process: {baseline['error']}", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    for folder in folders:
        shared = shared_size(folder)
        for dtype, files in dtype_files(folder).items():
            if args.dtypes and dtype not in args.dtypes:
                continue
            row: dict[str, Any] = {
                "bundle": folder.name,
                "dtype": dtype,
                "onnx_mb": sum(f.stat().st_size for f in files) / 1e6,
                "shared_mb": shared / 1e6,
            }
            row.update(measure(folder, dtype, args.threads))
            if "peak_mb" in row:
                row["model_mb"] = row["peak_mb"] - baseline["peak_mb"]
            rows.append(row)
            print(f"  {folder.name} {dtype}: {row.get('peak_mb', float('nan')):.0f} MB peak", file=sys.stderr)
    import onnxruntime

    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "baseline_peak_mb": baseline["peak_mb"],
    }
    print(
        f"\n{meta['machine']}, python {meta['python']}, onnxruntime {meta['onnxruntime']}; baseline "
        f"(import edgetf + onnxruntime): {baseline['peak_mb']:.0f} MB peak RSS\n"
    )
    print("| bundle | task | dtype | ONNX MB | other files MB | peak RSS MB | RSS over baseline MB | load + 1 call s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['bundle']} | ? | {r['dtype']} | {r['onnx_mb']:.2f} | {r['shared_mb']:.2f} | error | | |")
            print(f"  {r['bundle']} {r['dtype']}: {r['error']}", file=sys.stderr)
            continue
        print(
            f"| {r['bundle']} | {r['task']} | {r['dtype']} | {r['onnx_mb']:.2f} | {r['shared_mb']:.2f} "
            f"| {r['peak_mb']:.0f} | {r['model_mb']:.0f} | {r['first_call_s']:.2f} |"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nJSON: {out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
