"""Per-process medians of BERT-base q8 over many FRESH processes, per session setting: the hunt for the
slow-process mode (some processes run the whole time ~1.5x slower than others).

Each process builds one bare onnxruntime session on the bench_text bundle's q8 file under one
variant of the session settings, times ``--runs`` calls and prints its median; variants alternate
process by process so that load drift hits them alike. The spread is max/min - 1 of the per-process
medians; the slow mode shows as a second cluster.

    python benchmarks/process_spread.py [--processes 10] [--runs 20] [--variants default nospin pinned]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CACHE, run_worker, timed, worker_result  # noqa: E402

VARIANTS = {
    "default": "edgetf SessionOptions(intra_op_threads=2): spinning on, arena on, no pinning",
    "nospin": "allow_spinning=False",
    "pinned": "main thread on CPU 0, the one pool thread on CPU 1 (session.intra_op_thread_affinities)",
    "denormal": "session.set_denormal_as_zero=1",
    "noarena": "enable_mem_arena=False",
    "shortspin": "spinning on, but a pool thread parks after 100 us (session.intra_op.spin_duration_us)",
    "edgetf": "edgetf's session defaults as shipped (edgetf.SessionOptions(intra_op_threads=2))",
    "auto": "intra_op_threads=None: onnxruntime picks one thread per physical core (and pins them itself)",
}


def worker(variant: str, model: Path, feeds: Path, threads: int, runs: int) -> None:
    import numpy as np
    import onnxruntime as ort

    import edgetf

    options = edgetf.SessionOptions(intra_op_threads=threads, allow_spinning=variant != "nospin")
    if variant == "auto":
        options = edgetf.SessionOptions()
    if variant == "noarena":
        options = edgetf.SessionOptions(intra_op_threads=threads, enable_mem_arena=False)
    so = options.to_ort()
    if variant == "pinned" and threads == 2 and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        so.add_session_config_entry("session.intra_op_thread_affinities", "2")
    if variant == "shortspin":
        so.add_session_config_entry("session.intra_op.spin_duration_us", "100")
    if variant == "denormal":
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    if variant == "edgetf":
        sess = edgetf.Session(model, options=edgetf.SessionOptions(intra_op_threads=threads)).ort_session
    else:
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    given = dict(np.load(feeds))
    inputs = {i.name: given[i.name] for i in sess.get_inputs()}
    one = lambda: sess.run(None, inputs)  # noqa: E731
    one()
    first = time.time()
    worker_result(timed(one, runs, warmup=3), first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["default", "nospin", "pinned"], choices=sorted(VARIANTS))
    parser.add_argument("--models", nargs="+", default=[], metavar="LABEL=PATH", help="more files (default settings)")
    parser.add_argument("--models-setting", default="default", choices=sorted(VARIANTS), help="setting for --models")
    parser.add_argument("--bundle", type=Path, help="a bert-base bundle (default: bench_text's, built if missing)")
    parser.add_argument("--openvino", action="store_true", help="also OpenVINO NNCF int8 on the bundle's model.onnx")
    parser.add_argument("--json")
    parser.add_argument("--worker")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--feeds", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.feeds, args.threads, args.runs)
        return 0
    from benchmarks.bench_text import build, input_feeds
    from benchmarks.contenders import save_feeds

    CACHE.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or build(CACHE)[1]
    model = bundle / "onnx" / "model_quantized.onnx"
    feeds = save_feeds(input_feeds(bundle), CACHE, "bert-base")
    files = {v: model for v in args.variants}
    files.update({label: Path(path) for label, _, path in (m.partition("=") for m in args.models)})
    engines = {}
    if args.openvino:
        from benchmarks.contenders import openvino_specs

        fp32 = bundle / "onnx" / "model.onnx"
        engines = openvino_specs(fp32, feeds, args.threads, args.runs, CACHE / "openvino", modes=("int8",))
        files.update({name: fp32 for name in engines})
    medians: dict[str, list[float]] = {v: [] for v in files}
    cpu: dict[str, list[float]] = {v: [] for v in files}
    for i in range(args.processes):
        for variant, path in files.items():
            setting = variant if variant in VARIANTS else args.models_setting
            argv = ["--worker", setting, "--model", str(path), "--feeds", str(feeds)]
            if variant in engines:
                res = engines[variant]()
            else:
                res = run_worker(Path(__file__), [*argv, "--threads", str(args.threads), "--runs", str(args.runs)])
            if "median_ms" not in res:
                print(f"  {variant}: failed, left out: {res.get('error', '')[-300:]}")
                continue
            medians[variant].append(res["median_ms"])
            cpu[variant].append(res["cpu_ms"])
            print(f"  process {i + 1} {variant}: {res['median_ms']:.1f} ms (cpu {res['cpu_ms']:.1f} ms)", flush=True)
    summary = {}
    print(f"\nBERT-base q8, {args.threads} threads, {args.runs} runs per process, {args.processes} processes each")
    print("| variant | median of medians ms | min | max | spread (max/min-1) | CPU ms/call | per-process medians |")
    print("|---|---|---|---|---|---|---|")
    for variant, values in medians.items():
        if not values:
            continue
        spread = max(values) / min(values) - 1
        summary[variant] = {
            "medians_ms": values,
            "median_ms": statistics.median(values),
            "spread": spread,
            "cpu_ms": statistics.median(cpu[variant]),
            "cpu_spread": max(cpu[variant]) / min(cpu[variant]) - 1,
        }
        cells = " ".join(f"{v:.0f}" for v in values)
        print(
            f"| {variant} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} | "
            f"{spread:.0%} | {summary[variant]['cpu_ms']:.1f} | {cells} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
