"""python -m export all [--tiny] [--out models] | python -m export SOURCE --task T --out DIR [--dtype ...]"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import catalog
from .build import Result, export_entry

DTYPES = ("fp32", "q8", "int8", "uint8", "q4", "fp16", "qdq")
TARGETS = ("avx512", "avx2", "arm64")


def _log(message: str) -> None:
    print(message, flush=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, help="dtypes to produce (default: the catalog's)")
    parser.add_argument("--target", choices=TARGETS, help="q8 preset (default: this machine's CPU family)")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity check against transformers")


def run_all(args: argparse.Namespace) -> int:
    from edgetf.tasks import is_supported

    from .tasks import exportable_tasks

    entries = catalog.load()
    if args.only:
        unknown = set(args.only) - {e.name for e in entries}
        if unknown:
            _log(f"unknown entries {sorted(unknown)}; known: {', '.join(e.name for e in entries)}")
            return 2
        entries = [e for e in entries if e.name in args.only]
    out = Path(args.out)
    results: list[Result] = []
    for i, entry in enumerate(entries, 1):
        _log(f"[{i}/{len(entries)}] {entry.name} ({entry.task}) from {'tiny recipe' if args.tiny else entry.source}")
        if not is_supported(entry.task) or entry.task not in exportable_tasks():
            results.append(Result(entry.name, entry.task, "unsupported", "not yet supported"))
            _log("  not yet supported")
            continue
        results.append(_export_one(entry, out, args))
    _table(results)
    bad = [r for r in results if r.status in ("failed", "unavailable", "error")]
    return 1 if bad else 0


def _export_one(entry: catalog.Entry, out: Path, args: argparse.Namespace) -> Result:
    from .convert import SourceUnavailable
    from .plan import UnsupportedExport

    t0 = time.perf_counter()
    try:
        return export_entry(
            entry,
            out,
            tiny_model=args.tiny,
            dtypes=tuple(args.dtype) if args.dtype else None,
            target=args.target,
            verify=not args.no_verify,
            log=_log,
        )
    except SourceUnavailable as exc:
        _log(f"  unavailable: {exc}")
        return Result(entry.name, entry.task, "unavailable", str(exc), time.perf_counter() - t0)
    except UnsupportedExport as exc:
        _log(f"  unsupported: {exc}")
        return Result(entry.name, entry.task, "unsupported", str(exc), time.perf_counter() - t0)
    except Exception as exc:  # keep going with the other entries; the summary names the failure
        _log(f"  error: {type(exc).__name__}: {exc}")
        return Result(entry.name, entry.task, "error", f"{type(exc).__name__}: {exc}"[:200], time.perf_counter() - t0)


def _table(results: list[Result]) -> None:
    _log("")
    _log(f"{'entry':28} {'task':30} {'status':12} {'time':>7}  detail")
    for r in results:
        _log(f"{r.name:28} {r.task:30} {r.status:12} {r.seconds:6.1f}s  {r.detail}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "error", "unavailable", "unsupported")}
    _log(", ".join(f"{n} {s}" for s, n in counts.items() if n))


def run_one(args: argparse.Namespace) -> int:
    """Export one checkpoint (hub id, HF cache or local folder) for ``--task``: the task decides what the
    bundle is for, as ``transformers.pipeline(task)`` does; the family table decides how to export it."""
    from edgetf.tasks import normalize_task

    from .tasks import exportable_tasks

    try:
        task = normalize_task(args.task)
    except ValueError:
        task = args.task
    if task not in exportable_tasks():
        _log(f"error: export does not support task {args.task!r}; supported: {', '.join(exportable_tasks())}")
        return 2
    out = Path(args.out)
    problem = _out_problem(out)
    if problem:
        _log(f"error: --out {str(out)!r} {problem}")
        return 2
    entry = catalog.Entry(name=out.name, task=task, source=args.source, dtypes=tuple(args.dtype or ("fp32", "q8")))
    args.tiny = False
    _log(f"[1/1] {entry.name} ({entry.task}) from {entry.source}")
    result = _export_one(entry, out.parent, args)
    if result.status in ("unsupported", "unavailable"):
        return 2  # said in one line above: what is wrong and what is accepted
    _table([result])
    return 0 if result.status == "ok" else 1


def _out_problem(out: Path) -> str | None:
    """Why ``--out`` cannot take a bundle: an existing file, or a folder that holds something else."""
    if out.is_file():
        return "is a file; name a folder for the bundle"
    if out.is_dir() and any(out.iterdir()) and not (out / "edgetf.json").is_file():
        return "exists and is not an edgetf bundle; name a new or empty folder (a previous bundle is replaced)"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv[:1] == ["all"]:
        parser = argparse.ArgumentParser(prog="python -m export all", description="export every catalog entry")
        parser.add_argument("all")
        parser.add_argument("--tiny", action="store_true", help="small random-weight models built locally")
        parser.add_argument("--out", default="models", help="folder for the bundles (default: models)")
        parser.add_argument("--only", nargs="+", metavar="NAME", help="export only these catalog entries")
        _common(parser)
        return run_all(parser.parse_args(argv))
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="export a checkpoint (hub id or local folder) to an edgetf bundle; "
        "or `python -m export all [--tiny]` for the whole catalog",
    )
    parser.add_argument(
        "source",
        help="hub id (e.g. distilbert/distilbert-base-uncased-finetuned-sst-2-english) or a local checkpoint folder",
    )
    parser.add_argument("--task", required=True, help="task name, e.g. text-classification")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    _common(parser)
    return run_one(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
