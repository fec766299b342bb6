"""Shared benchmark machinery: contenders run in their own processes; results as a table and JSON.

A contender is a worker invocation of a benchmark script (``--worker NAME``) that prints one JSON
line; the parent measures cold start (spawn -> first result) and reads the child's peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EDGETF_BENCH_CACHE", "/tmp/edgetf-bench"))


def timed(fn: Callable[[], Any], runs: int, warmup: int = 2) -> dict[str, float]:
    """Median and p95 wall time of ``fn`` in milliseconds."""
    return timed_interleaved({"": fn}, runs, warmup)[""]


def timed_interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Median and p95 (ms) of each function, called in turn run by run so that load drift on a shared
    machine hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {key: [] for key in fns}
    cpu: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            samples[key].append((time.perf_counter() - t0) * 1000)
            cpu[key].append((time.process_time() - c0) * 1000)
    # cpu_ms: CPU time of the whole process per call (all its threads; spin-waits count): less sensitive
    # than wall time to other processes taking the cores, which is what a shared machine does
    return {
        key: {"median_ms": statistics.median(v), "p95_ms": p95(v), "cpu_ms": statistics.median(cpu[key])}
        for key, v in samples.items()
    }


def p95(samples: list[float]) -> float:
    """The 95th percentile (nearest rank below); the largest sample for fewer than 20."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def worker_result(payload: dict[str, Any], first_result_at: float) -> None:
    """Called by a worker: print its JSON line (with the wall-clock time of its first result)."""
    payload["first_result_at"] = first_result_at
    payload["peak_rss_mb"] = peak_rss_self_mb()
    print("RESULT " + json.dumps(payload), flush=True)


def run_worker(
    script: Path, args: list[str], env: dict[str, str] | None = None, timeout: int = 1800, python: str | None = None
) -> dict:
    """Spawn one contender (with ``python``, default this interpreter); returns its metrics plus cold
    start and peak RSS (MB)."""
    spawned = time.time()
    proc = subprocess.run(
        [python or sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    result = json.loads(lines[-1][len("RESULT ") :])
    result["cold_start_s"] = result.pop("first_result_at") - spawned
    return result


def run_rounds(specs: dict[str, Callable[[], dict]], rounds: int) -> dict[str, dict]:
    """Run every contender ``rounds`` times, alternating (round 1: A B C, round 2: A B C, ...), each call a
    fresh process, so that load drift on a shared machine hits all alike. Per contender: the last
    process's other metrics, ``median_ms`` the median of the per-process medians, ``process_medians_ms``
    all of them and ``spread`` = max/min - 1 across processes (None from one process). A contender whose
    first process fails is not run again (its row carries the error)."""
    runs: dict[str, list[dict]] = {name: [] for name in specs}
    for _ in range(max(1, rounds)):
        for name, spawn in specs.items():
            if runs[name] and "error" in runs[name][0]:
                continue
            result = spawn()
            runs[name].append(result)
            tag = result.get("median_ms", result.get("skipped", result.get("error", "")))
            print(f"  {name}: {tag if not isinstance(tag, float) else f'{tag:.1f} ms'}", flush=True)
    rows = {}
    for name, results in runs.items():
        ok = [r for r in results if "median_ms" in r]
        if not ok:
            rows[name] = results[0]
            continue
        medians = [r["median_ms"] for r in ok]
        rows[name] = {
            **ok[-1],
            "median_ms": statistics.median(medians),
            "process_medians_ms": medians,
            "spread": max(medians) / min(medians) - 1 if len(medians) > 1 else None,  # one process: unknown
        }
    return rows


def add_ratios(rows: list[dict[str, Any]], subject: str, ratios: dict[str, str]) -> None:
    """On the row of contender ``subject``: ``key`` = its median / the median of contender ``other``
    for each ``key: other`` in ``ratios`` (left out where either has no time)."""
    by_name = {r["contender"]: r for r in rows}
    mine = by_name.get(subject, {})
    for key, other in ratios.items():
        theirs = by_name.get(other, {})
        if "median_ms" in mine and "median_ms" in theirs:
            mine[key] = mine["median_ms"] / theirs["median_ms"]


def peak_rss_self_mb() -> float:
    """This process's peak resident memory (MB). VmHWM, since ru_maxrss survives exec() and reports the
    parent's peak when that was larger (a benchmark parent that built a model with torch, say)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def dir_size_mb(paths: list[Path]) -> float:
    """Size of files, counting each ONNX graph's ``.onnx_data`` weights file with it."""
    files = [p for p in paths if p.is_file()] + [p.with_name(p.name + "_data") for p in paths]
    return sum(p.stat().st_size for p in set(files) if p.is_file()) / 1e6


def installed_size_mb(dists: list[str]) -> float:
    """Bytes on disk of installed distributions and their dependencies (transitively)."""
    import re
    from importlib import metadata

    seen: set[str] = set()
    stack = list(dists)
    total = 0
    while stack:
        name = re.split(r"[ ;<>=!\[~]", stack.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            path = Path(dist.locate_file(f))
            if path.is_file():
                total += path.stat().st_size
        for req in dist.requires or []:
            if "extra ==" not in req:
                stack.append(req)
    return total / 1e6


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; columns are (key, header, format)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("—" if value is None else (format(value, fmt) if fmt else str(value)))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def memory_bandwidth(size_mb: int = 1024, threads: int = 1, repeats: int = 10) -> dict[str, float]:
    """Measured main-memory bandwidth in GB/s (1e9 bytes/s), best of ``repeats``: the physical limit of
    batch-1 decoding, which must read every weight once per token.

    ``read_gbps``: a STREAM-like read test: ``max`` over a float32 array of ``size_mb`` (far larger than
    the caches), split across ``threads`` Python threads (numpy reductions release the GIL but are
    single-threaded each); ``max`` rather than ``sum`` because numpy's pairwise float sum is
    compute-bound below the memory speed. ``read_1t_gbps``: the same on one thread.
    ``copy_gbps``: ``np.copyto`` counted as read + write bytes (write-allocate traffic not counted).
    ``gbps``: the best read figure, the one to compare decoding against.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    data = np.ones((size_mb << 20) // 4, dtype=np.float32)
    out = np.empty_like(data)

    def best(fn: Callable[[], Any], nbytes: int) -> float:
        fn()  # first touch: page faults, not bandwidth
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        return nbytes / min(seconds) / 1e9

    result = {"size_mb": float(size_mb), "threads": float(threads)}
    result["read_1t_gbps"] = best(lambda: data.max(), data.nbytes)
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        parts, outs = np.array_split(data, max(threads, 1)), np.array_split(out, max(threads, 1))
        result["read_gbps"] = best(lambda: list(pool.map(np.max, parts)), data.nbytes)
        result["copy_gbps"] = best(lambda: list(pool.map(np.copyto, outs, parts)), 2 * data.nbytes)
    result["gbps"] = max(result["read_1t_gbps"], result["read_gbps"])
    return result


def onnx_weight_bytes(path: Path) -> dict[str, int]:
    """Bytes of the initializers a batch-1 decoding step reads in full, classified by consuming op.

    ``weight_bytes``: every initializer with at least one consumer other than ``Gather`` (MatMul,
    MatMulInteger, Gemm, their scales and zero points, biases, norms; a tied embedding that also feeds the
    LM head through ``Transpose`` counts, since the head reads all of it). ``gather_only_bytes``: tables
    only ever indexed (token and position embeddings): a step reads one row of each, so they are left out.
    Sizes come from the declared shapes, so weights in external data files count without being loaded.
    Initializers used inside subgraphs (merged decoders' If branches) count once.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    consumers: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}

    def walk(graph: Any) -> None:
        for init in graph.initializer:
            count = 1
            for dim in init.dims:
                count *= dim
            sizes[init.name] = count * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, set()).add(node.op_type)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)

    walk(model.graph)
    gather_only = {n for n in sizes if consumers.get(n) == {"Gather"}}
    return {
        "weight_bytes": sum(b for n, b in sizes.items() if n not in gather_only and n in consumers),
        "gather_only_bytes": sum(sizes[n] for n in gather_only),
    }


def build_bundle(entry: Any, folder: Path) -> tuple[Path, Path]:
    """(bundle, checkpoint) of a catalog-style entry built once with the export code from a random-weight
    checkpoint (``entry.tiny``; verification skipped: random weights); cached in ``folder``."""
    from export.build import checkpoint_dir, export_entry

    bundle, ckpt = folder / entry.name, checkpoint_dir(folder, entry.name)
    marker = bundle / ".bench-ready"
    if not marker.is_file():
        result = export_entry(entry, folder, tiny_model=True, verify=False, log=lambda m: print(m, file=sys.stderr))
        if result.status != "ok":
            raise SystemExit(f"building {entry.name} failed: {result.detail}")
        marker.write_text(repr(entry))
    return bundle, ckpt
