"""python -m edgetf run TASK BUNDLE INPUT... | info BUNDLE | providers | demo [MODELS_DIR]"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import Bundle, available_providers, bundle_task, pipeline
from .errors import EdgetfError


def to_jsonable(value: Any) -> Any:
    """Pipeline outputs as JSON: arrays become lists (or a shape summary when large), images a summary."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else {"array": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "mode") and hasattr(value, "size") and hasattr(value, "getbands"):  # PIL image
        return {"image": value.mode, "size": list(value.size)}
    return value


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option takes key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def cmd_run(args: argparse.Namespace) -> int:
    pipe = pipeline(None if args.task == "auto" else args.task, args.bundle, dtype=args.dtype, device=args.device)
    inputs = pipe.cli_inputs(args.inputs)
    options = dict(args.option or [])
    output = pipe(inputs, **options)
    print(json.dumps(to_jsonable(output), ensure_ascii=False, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    bundle = Bundle.open(args.bundle, verify="size")
    manifest = bundle.manifest or {}
    print(f"bundle     {bundle.root}")
    print(f"task       {bundle_task(bundle)}" + ("" if bundle.manifest else "  (from config.json; no edgetf.json)"))
    print(f"model      {bundle.config.get('architectures')} ({bundle.config.get('model_type')})")
    if manifest:
        src = manifest.get("source", {})
        print(f"source     {src.get('id')} @ {src.get('revision')}")
        print(f"default    {manifest.get('default_dtype')}")
        print(f"tools      {', '.join(f'{k} {v}' for k, v in manifest.get('tools', {}).items())}")
    print("dtypes")
    files = manifest.get("files", {})
    onnx_files = sorted(p.relative_to(bundle.root).as_posix() for p in (bundle.root / "onnx").glob("*.onnx"))
    for dtype, report in manifest.get("dtypes", {}).items():
        size = sum(files.get(f, {}).get("size", 0) for f in report.get("files", []))
        parity = report.get("parity", {})
        verdict = {True: "pass", False: "FAIL"}.get(report.get("passed"), "not verified")
        detail = ", ".join(f"{k}={parity[k]:.3g}" for k in ("max_diff", "agreement") if k in parity)
        print(f"  {dtype:6} {size / 1e6:8.2f} MB  {verdict:12} {detail}")
    if not manifest:
        for rel in onnx_files:
            print(f"  {rel}  {(bundle.root / rel).stat().st_size / 1e6:.2f} MB")
    print(f"providers  {', '.join(available_providers())}")
    return 0


def cmd_providers(_args: argparse.Namespace) -> int:
    for name in available_providers():
        print(name)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(args.models)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()) if root.is_dir() else []
    if not folders:
        print(f"no bundles under {root}; run `python -m export all --tiny` first", file=sys.stderr)
        return 1
    failures = 0
    for folder in folders:
        try:
            pipe = pipeline(None, folder)
            sample = pipe.demo_input()
            t0 = time.perf_counter()
            output = pipe(sample)
            ms = (time.perf_counter() - t0) * 1000
        except EdgetfError as exc:
            failures += 1
            print(f"== {folder.name}: {type(exc).__name__}: {exc}")
            continue
        text = json.dumps(to_jsonable(output), ensure_ascii=False)
        shown = sample if isinstance(sample, str) else type(sample).__name__
        print(f"== {folder.name} [{pipe.task}, {pipe.dtype}, {ms:.0f} ms] input: {str(shown)[:60]!r}")
        print(f"   {text[:300]}{'...' if len(text) > 300 else ''}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetf", description="run exported bundles with onnxruntime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a task on inputs and print the output as JSON")
    run.add_argument("task", help="task name, or 'auto' for the bundle's own")
    run.add_argument("bundle")
    run.add_argument("inputs", nargs="+", help="texts, or file paths for audio/image tasks")
    run.add_argument("--dtype", default="auto")
    run.add_argument("--device", default="cpu")
    run.add_argument(
        "--option",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="pipeline option, value parsed as JSON when it can be (repeatable)",
    )
    run.set_defaults(func=cmd_run)
    info = sub.add_parser("info", help="manifest summary and available providers")
    info.add_argument("bundle")
    info.set_defaults(func=cmd_info)
    providers = sub.add_parser("providers", help="execution providers this onnxruntime can use")
    providers.set_defaults(func=cmd_providers)
    demo = sub.add_parser("demo", help="run every bundle under a folder on a built-in sample input")
    demo.add_argument("models", nargs="?", default="models")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EdgetfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
