"""The benchmark suite in ONE run: every family benchmark (benchmarks/bench_*.py) plus install size.

    python benchmarks/suite.py [--quick] [--only text generation ...] [--json results.json]

Each family script compares edgetf q8/fp32 with the transformers pipeline (PyTorch fp32, same
threads), optimum's ORTModel where optimum has a class, and bare onnxruntime, each contender in
its own process; this collects their JSON and adds the installed size of a runtime-only
environment against transformers + torch. Ratios matter more than absolute times on a noisy
machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import installed_size_mb, table  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNTIME = ["onnxruntime", "numpy", "tokenizers", "soundfile", "pillow"]
HEAVY = ["torch", "transformers"]


def families() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


ANCHORS = [
    ("family", "family", ""),
    ("model", "model", ""),
    ("vs_transformers", "edgetf q8 × transformers", ".2f"),
    ("vs_optimum_q8", "× optimum q8", ".2f"),
    ("vs_openvino_int8", "× OpenVINO int8", ".2f"),
    ("vs_ctranslate2", "× CTranslate2 int8", ".2f"),
    ("vs_faster_whisper", "× faster-whisper", ".2f"),
    ("spread", "edgetf q8 process spread", ".0%"),
]


def anchors(results: dict[str, object]) -> list[dict[str, object]]:
    """Per family and model, edgetf q8's time as a multiple of each anchor's (below 1: edgetf faster), from
    every ``edgetf-q8`` row in the families' JSON (throughput ratios of the generation bench inverted)."""
    rows: list[dict[str, object]] = []

    def walk(family: str, node: object) -> None:
        if isinstance(node, dict):
            if node.get("contender") == "edgetf-q8":
                row: dict[str, object] = {"family": family, "model": node.get("model", "—")}
                for key, value in node.items():
                    if key.startswith("vs_") and isinstance(value, (int, float)) and value:
                        throughput = "tokens_per_s" in node  # higher is better there: invert to a time ratio
                        row[key.removesuffix("_fp32")] = 1 / value if throughput else value
                if "spread" in node:
                    row["spread"] = node["spread"]
                rows.append(row)
                return
            for value in node.values():
                walk(family, value)
        elif isinstance(node, list):
            for value in node:
                walk(family, value)

    for family, result in results.items():
        walk(family, result)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset: fewer runs and models")
    parser.add_argument("--only", nargs="+", choices=sorted(families()), help="run only these families")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args()
    results: dict[str, object] = {}
    start = time.perf_counter()
    for name, script in families().items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ({script.name})", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        cmd = [sys.executable, str(script), "--json", str(out)] + (["--quick"] if args.quick else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = proc.stdout.splitlines()
        # markdown tables and their notes; families without one: their indented lines, as before
        tables = [ln for ln in lines if ln.startswith(("|", "- "))]
        print("\n".join(tables or [ln for ln in lines if ln.startswith(("|", "  "))][-40:]))
        if proc.returncode == 0 and out.stat().st_size:
            results[name] = json.loads(out.read_text())
        else:
            results[name] = {"error": proc.stdout[-1500:]}
            print(f"FAILED ({proc.returncode}): {proc.stdout[-600:]}")
        print(f"({time.perf_counter() - t0:.0f} s)")
    results["anchors"] = anchors(results)
    print("\n=== anchors: edgetf q8 time as a multiple of each engine's (one run, each contender its own process)")
    print(table(results["anchors"], ANCHORS))
    runtime, heavy = installed_size_mb(RUNTIME), installed_size_mb(HEAVY)
    results["install_size_mb"] = {"runtime": runtime, "transformers_torch": heavy, "ratio": runtime / heavy}
    print(
        f"\ninstalled size: edgetf runtime deps {runtime:.0f} MB vs transformers+torch {heavy:.0f} MB "
        f"({runtime / heavy:.1%})"
    )
    print(f"suite time: {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if not any(isinstance(r, dict) and "error" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
