"""Batch jobs: one task over many inputs into a JSONL file, with a progress bar, resumable.

    python -m edgetf batch TASK BUNDLE INPUT... --out results.jsonl [--batch-size 8] [--option k=v]

Inputs: plain text arguments; ``.jsonl`` files with one ``{"text": ...}`` or ``{"inputs": ...}`` object
(or a JSON string) per line; for audio and image tasks files, globs and folders (every file below,
sorted); for text tasks ``.txt`` files and folders of them (each file's content is one text).

Each input gives one line ``{"input": <path or text>, "output": ...}`` or ``{"input": ..., "error":
{"type", "message"}}``; a failing item is recorded and the run goes on. Inputs already recorded in
the output file (as many times as they occur there) are skipped, so an interrupted run continues
where it stopped. ``batch_size`` inputs go to the model per run (texts sorted by length within a
window of 16 batches, so a batch pads little); when a call fails, its inputs are retried one by one
so only the bad one is marked failed.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pipeline
from .errors import EdgetfError, InvalidInputError
from .jsonable import to_json_value

MEDIA_TASKS = (
    "automatic-speech-recognition",
    "audio-classification",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "depth-estimation",
)
GLOB_CHARS = "*?["
# text inputs are read SORT_WINDOW batches at a time and sorted by length inside, so each batch pads
# to a similar length (mixed lengths padded to the longest made batch 16 half as fast as batch 1)
SORT_WINDOW = 16


@dataclass(frozen=True)
class Item:
    """One input: what is recorded as ``input``, what the pipeline gets, or why it cannot be read."""

    record: Any
    value: Any = None
    error: str | None = None

    @property
    def key(self) -> str:
        return record_key(self.record)


def record_key(record: Any) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


# -- inputs ----------------------------------------------------------------------------------------------
def jsonl_items(path: Path) -> Iterator[Item]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield Item(where, error=f"line is not JSON: {exc}")
                continue
            if isinstance(row, str):
                yield Item(row, row)
            elif isinstance(row, dict) and ("text" in row or "inputs" in row):
                value = row.get("text", row.get("inputs"))
                yield Item(to_json_value(value), value)
            else:
                yield Item(where, error='a line must be a JSON string or an object with "text" or "inputs"')


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))


def kind_of(arg: str) -> str | None:
    """ "file", "dir" or None (nothing there, or a text no path can be: too long, a NUL byte ...)."""
    try:
        path = Path(arg)
        return "file" if path.is_file() else "dir" if path.is_dir() else None
    except (OSError, ValueError):
        return None


def expand(args: Iterable[str], media: bool) -> list[Item]:
    """The items of the command-line inputs, in order (see the module docstring)."""
    items: list[Item] = []
    for arg in args:
        path, kind = Path(arg), kind_of(arg)
        if path.suffix == ".jsonl" and kind == "file":
            items.extend(jsonl_items(path))
        elif kind == "dir":
            found = files_under(path) if media else [p for p in files_under(path) if p.suffix == ".txt"]
            if not found:
                raise InvalidInputError(f"folder {arg!r} holds no {'files' if media else '.txt files'}")
            items.extend(file_item(p, media) for p in found)
        elif kind == "file" and (media or path.suffix == ".txt"):
            items.append(file_item(path, media))
        elif media and any(c in arg for c in GLOB_CHARS):
            matched = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not matched:
                raise InvalidInputError(f"{arg!r} matches no file")
            items.extend(file_item(p, media) for p in matched)
        elif media:
            items.append(Item(arg, error=f"{arg!r} is not a file, folder or glob that matches files"))
        else:
            items.append(Item(arg, arg))
    return items


def file_item(path: Path, media: bool) -> Item:
    if media:
        return Item(str(path), str(path))
    try:
        return Item(str(path), path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Item(str(path), error=f"cannot read {str(path)!r} as UTF-8 text: {exc}")


# -- the output file ---------------------------------------------------------------------------------------
def recorded(out: Path) -> tuple[Counter[str], Counter[str]]:
    """(inputs recorded, inputs recorded with an error) in ``out``, by key. A torn last line (a run killed
    while writing) is cut off so that appending continues on a fresh line."""
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    if not out.is_file():
        return done, failed
    data = out.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line)
            if not line.endswith(b"\n") or not isinstance(row, dict) or "input" not in row:
                raise ValueError
        except ValueError:
            break
        keep += len(line)
        done[record_key(row["input"])] += 1
        if "error" in row:
            failed[record_key(row["input"])] += 1
    if keep < len(data):
        with out.open("r+b") as f:
            f.truncate(keep)
    return done, failed


# -- progress ----------------------------------------------------------------------------------------------
class PlainProgress:
    """A progress line on stderr every few seconds (when tqdm is not installed)."""

    def __init__(self, total: int, disable: bool):
        self.total, self.count, self.disable = total, 0, disable
        self.start = self.shown = time.monotonic()

    def update(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if not self.disable and (now - self.shown > 2 or self.count == self.total):
            rate = self.count / max(now - self.start, 1e-9)
            print(f"{self.count}/{self.total} inputs ({rate:.1f}/s)", file=sys.stderr)
            self.shown = now

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainProgress(total, disable=not enabled)
    return tqdm(total=total, unit="input", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


# -- the run -----------------------------------------------------------------------------------------------
@dataclass
class Summary:
    out: Path
    total: int = 0
    skipped: int = 0
    ok: int = 0
    new_failures: int = 0
    old_failures: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Failed inputs among these: in this run, plus skipped ones recorded with an error before."""
        return self.new_failures + self.old_failures

    def line(self) -> str:
        rate = (self.ok + self.new_failures) / self.seconds if self.seconds > 0 else 0.0
        return (
            f"batch: {self.total} inputs, {self.ok} done, {self.new_failures} failed, {self.skipped} skipped "
            f"(already in {self.out}; {self.old_failures} of them failed) in {self.seconds:.1f} s "
            f"({rate:.1f} inputs/s)"
        )


def run_batch(
    task: str | None,
    bundle: Any,
    inputs: Iterable[str],
    *,
    out: Path,
    batch_size: int = 8,
    options: dict[str, Any] | None = None,
    dtype: str = "auto",
    device: str = "cpu",
    progress: bool = True,
    pipe: Any = None,
) -> Summary:
    """Run ``task`` of ``bundle`` over ``inputs`` into the JSONL file ``out`` (see the module docstring)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    pipe = pipe or pipeline(None if task in (None, "auto") else task, bundle, dtype=dtype, device=device)
    options = dict(options or {})
    pipe.check_options(options)
    items = expand(inputs, media=pipe.task in MEDIA_TASKS)
    done, failed = recorded(out)
    summary = Summary(out=out, total=len(items))
    todo = []
    for item in items:
        if done[item.key] > 0:
            done[item.key] -= 1
            summary.skipped += 1
            if failed[item.key] > 0:
                failed[item.key] -= 1
                summary.old_failures += 1
        else:
            todo.append(item)
    start = time.perf_counter()
    bar = progress_bar(len(todo), progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("a", encoding="utf-8") as sink:
            window = batch_size * SORT_WINDOW if batch_size > 1 and pipe.task not in MEDIA_TASKS else batch_size
            for offset in range(0, len(todo), window):
                chunk = todo[offset : offset + window]
                for row in run_chunk(pipe, chunk, options, batch_size):
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                    if "error" in row:
                        summary.new_failures += 1
                        summary.errors.append(f"{row['input']}: {row['error']['message']}")
                    else:
                        summary.ok += 1
                sink.flush()
                bar.update(len(chunk))
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary


def run_chunk(pipe: Any, chunk: list[Item], options: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """The output rows of a chunk, in order: one pipeline call for the readable items, texts sorted by
    length so that each batch pads little (one by one if the call fails)."""
    readable = [item for item in chunk if item.error is None]
    if all(isinstance(item.value, str) for item in readable):
        readable.sort(key=lambda item: len(item.value))
    outputs: dict[int, Any] = {}
    if len(readable) > 1:
        try:
            results = outputs_for(pipe, [item.value for item in readable], options, batch_size)
            outputs = {id(item): result for item, result in zip(readable, results)}
        except Exception:  # retried one by one below, where each failure is recorded with its item
            outputs = {}
    rows = []
    for item in chunk:
        if item.error is not None:
            rows.append(error_row(item.record, "InvalidInputError", item.error))
            continue
        try:
            result = outputs[id(item)] if id(item) in outputs else outputs_for(pipe, [item.value], options, 1)[0]
            rows.append({"input": item.record, "output": to_json_value(result)})
        except (EdgetfError, ValueError, TypeError, OSError, RuntimeError) as exc:
            rows.append(error_row(item.record, type(exc).__name__, str(exc)))
    return rows


def outputs_for(pipe: Any, values: list[Any], options: dict[str, Any], batch_size: int) -> list[Any]:
    """One output per value, each shaped as an element of a list call's output (transformers gives
    ``[{...}]`` for a single text but ``[{...}, {...}]`` for two, so one value is a list of one).
    Several values go in one call, ``batch_size`` per model run where the pipeline takes batch_size."""
    if len(values) == 1 or any(isinstance(v, list) for v in values):  # a list value: pre-tokenized words ...
        results = []
        for value in values:
            result = pipe(value, **options) if isinstance(value, list) else pipe([value], **options)
            one = not isinstance(value, list) and isinstance(result, list) and len(result) == 1
            results.append(result[0] if one else result)
        return results
    call_options = dict(options)
    if "batch_size" in pipe.options_accepted:
        call_options.setdefault("batch_size", batch_size)
    results = pipe(values, **call_options)
    if not isinstance(results, list) or len(results) != len(values):
        raise InvalidInputError(f"{pipe.task} gave {type(results).__name__} for a list of {len(values)} inputs")
    return results


def error_row(record: Any, kind: str, message: str) -> dict[str, Any]:
    return {"input": record, "error": {"type": kind, "message": message}}
