"""What each qdq ladder level costs on OpenVINO: BERT-base classifier (bench_text.py's bundle), 128 tokens.

Writes the ``ffn-out-float`` and ``ffn-float`` qdq files of the bundle's fp32 graph beside the cache, then
times level ``all`` (the bundle's model_qdq.onnx), those two and fp32 through edgetf's OpenVINO engine, each
in a fresh process, alternating rounds. Prints medians and each one's time over level ``all``.

    python benchmarks/bench_text.py --only edgetf-q8   # once: builds the bundle in the cache
    python benchmarks/qdq_levels_speed.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CACHE  # noqa: E402


def worker(model: Path, feeds_path: Path, threads: int, runs: int) -> float:
    from edgetf.openvino_engine import OpenVINOSession
    from edgetf.session import SessionOptions

    session = OpenVINOSession(model, options=SessionOptions(intra_op_threads=threads))
    feeds = dict(np.load(feeds_path))
    session.run(feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    feeds_path = sorted(CACHE.glob("feeds-bert-base-*.npz"))[-1]
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), Path(args.worker[1]), args.threads, args.runs)))
        return 0
    from export import quantize

    onnx = CACHE / "bert-base" / "onnx"
    paths = {"all": onnx / "model_qdq.onnx"}
    feeds = dict(np.load(feeds_path))
    for level in ("ffn-out-float", "ffn-float"):
        paths[level] = CACHE / "qdq-levels" / f"model_qdq_{level}.onnx"
        if not paths[level].is_file():
            paths[level].parent.mkdir(parents=True, exist_ok=True)
            quantize.quantize_qdq(onnx / "model.onnx", paths[level], calibration=[feeds], level=level)
    paths["fp32"] = onnx / "model.onnx"
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, path in paths.items():
            argv = [sys.executable, __file__, "--worker", str(path), str(feeds_path)]
            proc = subprocess.run([*argv, "--threads", str(args.threads), "--runs", str(args.runs)], **_CAPTURE)
            samples[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {name}: {samples[name][-1]:.1f} ms", flush=True)
    median = {name: statistics.median(v) for name, v in samples.items()}
    result = {"median_ms": median, "samples_ms": samples, "vs_all": {k: v / median["all"] for k, v in median.items()}}
    print(json.dumps(result))
    return 0


_CAPTURE = {"capture_output": True, "text": True, "check": True}

if __name__ == "__main__":
    sys.exit(main())
