"""The benchmark suite in ONE run: each family's benchmark at real model sizes, then the anchors table
(edgetf q8's time as a multiple of each other engine's) and the install size.

    python benchmarks/suite.py [--quick] [--only text generation ...] [--json results.json]

Families (FAMILIES below): text (BERT-base), vision (ViT, ConvNeXT, DETR, GLPN, Mask2Former), generation
(GPT-2 124M) and generation-llama (a Llama-style decoder of the same size), speech (Whisper-base, Wav2Vec2-base)
and seq2seq (BART). Each script compares edgetf q8/fp32 with the transformers pipeline (PyTorch fp32, same
threads), optimum's ORTModel where optimum has a class, bare onnxruntime and the other engines of
benchmarks/contenders.py (OpenVINO, CTranslate2, faster-whisper: run from their own venv, skipped with the
reason without it), each contender in its own process, alternating rounds. Built models are cached under
$EDGETF_BENCH_CACHE (default /tmp/edgetf-bench); a first run exports them. Studies that answer one question
(serve, conv_int8, word_timestamps; vad takes a bundle) run on their own or with --only. --quick: each family's
smoke mode (tiny models: ratios mean nothing). Ratios matter more than absolute times on a noisy machine.
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

from benchmarks.common import CACHE, installed_size_mb, table  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNTIME = ["onnxruntime", "numpy", "tokenizers", "soundfile", "pillow"]
HEAVY = ["torch", "transformers"]


def families() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


# The anchors run: family -> (script, arguments at real size). Rounds = fresh processes per contender.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "text": ("bench_text.py", ("--rounds", "3")),
    "vision": ("bench_vision.py", ("--threads", "2", "--rounds", "2", "--work", str(CACHE / "vision"))),
    "generation": (
        "bench_generation.py",
        ("--tokens", "64", "--repeats", "1", "--rounds", "2", "--models", str(CACHE / "gpt2")),
    ),
    "generation-llama": (
        "bench_generation.py",
        ("--arch", "llama", "--tokens", "64", "--repeats", "1", "--rounds", "2", "--models", str(CACHE / "llama")),
    ),
    "speech": ("bench_speech.py", ("--rounds", "2", "--runs", "1", "--models", str(CACHE / "speech"))),
    "seq2seq": ("bench_seq2seq.py", ("--parts", "contenders")),
}
STUDIES = ("serve", "conv_int8", "word_timestamps")  # their own questions: only with --only


def commands(only: list[str] | None, quick: bool) -> dict[str, list[str]]:
    """family -> the command line that runs it (without --json)."""
    scripts = families()
    out: dict[str, list[str]] = {}
    for name in only or list(FAMILIES):
        script, args = FAMILIES.get(name, (f"bench_{name}.py", ()))
        if quick and name in FAMILIES:  # the studies have no smoke mode
            keep = [a for a in args if a.startswith("--arch") or a == "llama"]
            args = (*keep, "--quick")
        out[name] = [sys.executable, str(scripts[Path(script).stem.removeprefix("bench_")]), *args]
    return out


ANCHORS = [
    ("family", "family", ""),
    ("model", "model", ""),
    ("vs_transformers", "edgetf q8 × transformers", ".2f"),
    ("vs_optimum_q8", "× optimum q8", ".2f"),
    ("vs_openvino_int8", "× OpenVINO int8", ".2f"),
    ("vs_ctranslate2", "× CTranslate2 int8", ".2f"),
    ("vs_faster_whisper", "× faster-whisper", ".2f"),
    ("spread", "edgetf q8 process spread", ".0%"),
    ("bandwidth_pct", "q8: % of memory bandwidth", ".0f"),
    ("pipeline_bandwidth_pct", "… via edgetf.pipeline", ".0f"),
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
                for key in ("spread", "bandwidth_pct", "pipeline_bandwidth_pct"):
                    if node.get(key) is not None:
                        row[key] = node[key]
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
    parser.add_argument(
        "--only", nargs="+", choices=sorted({*FAMILIES, *families()}), help="run only these families (or studies)"
    )
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args()
    results: dict[str, object] = {}
    start = time.perf_counter()
    for name, cmd in commands(args.only, args.quick).items():
        print(f"\n=== {name} ({Path(cmd[1]).name} {' '.join(cmd[2:])})", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        cmd = [*cmd, "--json", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = proc.stdout.splitlines()
        # markdown tables and their notes; a family without one (generation): its plain-text table
        tables = [ln for ln in lines if ln.startswith(("|", "- "))]
        plain = [ln for ln in lines if ln.strip() and not ln.startswith((" ", "{", "}", "[", "]"))]
        print("\n".join(tables or plain[-30:]))
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
