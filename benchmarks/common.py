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
    for _ in range(runs):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - t0) * 1000)
    return {key: {"median_ms": statistics.median(v), "p95_ms": p95(v)} for key, v in samples.items()}


def p95(samples: list[float]) -> float:
    """The 95th percentile (nearest rank below); the largest sample for fewer than 20."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def worker_result(payload: dict[str, Any], first_result_at: float) -> None:
    """Called by a worker: print its JSON line (with the wall-clock time of its first result)."""
    payload["first_result_at"] = first_result_at
    payload["peak_rss_mb"] = peak_rss_self_mb()
    print("RESULT " + json.dumps(payload), flush=True)


def run_worker(script: Path, args: list[str], env: dict[str, str] | None = None, timeout: int = 1800) -> dict:
    """Spawn one contender; returns its metrics plus cold start and peak RSS (MB)."""
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, str(script), *args],
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
