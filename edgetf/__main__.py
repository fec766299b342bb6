"""python -m edgetf run TASK BUNDLE INPUT... | info BUNDLE | providers | demo [MODELS_DIR] | verify BUNDLE
| doctor [BUNDLE] | serve MODELS_DIR | batch TASK BUNDLE INPUT... --out FILE"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import Bundle, available_providers, bundle_task, pipeline, supported_tasks
from .errors import EdgetfError, InvalidInputError
from .tasks import pipeline_class


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


def tasks_with(attribute: str) -> list[str]:
    """The supported tasks whose pipeline class has ``attribute`` (for error messages)."""
    return [task for task in supported_tasks() if hasattr(pipeline_class(task), attribute)]


def check_run_flags(args: argparse.Namespace, pipe: Any) -> None:
    """Refuse --save, --timestamps, --stream on a task that cannot honour them, before the model runs."""
    from .vision.draw import DRAWERS

    if args.save is not None and pipe.task not in DRAWERS:
        raise InvalidInputError(f"--save draws the output of {', '.join(DRAWERS)}; {pipe.task} has no picture")
    if args.save is not None:
        check_save_path(Path(args.save))
    if args.timestamps and not hasattr(pipe, "timestamps_option"):
        raise InvalidInputError(
            f"--timestamps applies to {', '.join(tasks_with('timestamps_option'))}, not {pipe.task}"
        )
    if args.stream and not hasattr(pipe, "stream"):
        raise InvalidInputError(f"--stream applies to {', '.join(tasks_with('stream'))}, not {pipe.task}")
    if args.stream and args.json:
        raise InvalidInputError("--stream writes plain text as it is generated; drop --json (or --stream)")
    check_format_flags(args, pipe)


def check_format_flags(args: argparse.Namespace, pipe: Any) -> None:
    """--format and --output: automatic-speech-recognition only, one input, no other output mode."""
    from .transcripts import FORMATS

    if args.format is None:
        if args.output is not None:
            raise InvalidInputError("--output goes with --format (srt, vtt, txt, tsv, json)")
        return
    if pipe.task != "automatic-speech-recognition":
        raise InvalidInputError(f"--format writes transcripts of automatic-speech-recognition, not {pipe.task}")
    if args.format not in FORMATS:
        raise InvalidInputError(f"--format {args.format!r}: use one of {', '.join(FORMATS)}")
    if args.timestamps or args.stream or args.json or args.save is not None:
        raise InvalidInputError("--format is an output of its own: drop --timestamps/--stream/--json/--save")
    if len(args.inputs) != 1:
        raise InvalidInputError(f"--format writes one transcript: give one audio file, not {len(args.inputs)}")


def write_transcript(pipe: Any, args: argparse.Namespace, options: dict[str, Any]) -> None:
    """Transcribe the one input and write it in --format to --output (or stdout), asking for timestamps
    (segments, or CTC words: txt writes one per line, as openai-whisper)."""
    from .audio.io import load_audio
    from .transcripts import render

    options.setdefault("return_timestamps", pipe.timestamps_option())
    audio = load_audio(args.inputs[0], pipe.sampling_rate)
    result = pipe(audio.samples, **options)
    text = render(result, args.format, duration=audio.seconds)
    if args.output is None:
        sys.stdout.write(text)
        return
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"--output: cannot write {args.output!r}: {exc}") from exc
    print(f"wrote {args.output}", file=sys.stderr)


def check_save_path(path: Path) -> None:
    """An image format Pillow can write, in an existing folder."""
    from PIL import Image

    Image.init()
    suffix = path.suffix.lower()
    if Image.registered_extensions().get(suffix) not in Image.SAVE:
        raise InvalidInputError(f"--save {str(path)!r}: name the picture with an image extension (.png, .jpg, .webp)")
    if not path.parent.is_dir():
        raise InvalidInputError(f"--save {str(path)!r}: folder {str(path.parent)!r} does not exist")


def numbered(path: Path, index: int) -> Path:
    """Where the picture of input ``index`` goes: ``out.png`` for the first, then ``out-1.png``, ``out-2.png`` ..."""
    return path if index == 0 else path.with_name(f"{path.stem}-{index}{path.suffix}")


def save_pictures(task: str, items: list[Any], outputs: list[Any], path: Path) -> list[Path]:
    """Draw each output over its input image (loaded as the pipeline loads it) and save it; the paths written."""
    from .vision.draw import DRAWERS
    from .vision.image import load_image

    written = []
    for i, (item, output) in enumerate(zip(items, outputs)):
        target = numbered(path, i)
        picture = DRAWERS[task](load_image(item), output)
        try:
            picture.save(target)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"--save: cannot write {str(target)!r}: {exc}") from exc
        written.append(target)
    return written


def clock(seconds: float | None) -> str:
    """``[hh:]mm:ss.cc``; None (a segment still open at the end of the audio) as ``...``."""
    if seconds is None:
        return "..."
    minutes, centis = divmod(round(float(seconds) * 100), 6000)
    hours, minutes = divmod(minutes, 60)
    text = f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"
    return f"{hours:d}:{text}" if hours else text


def timestamp_lines(output: dict[str, Any]) -> list[str]:
    """One ``[start --> end]  text`` line per chunk of an ASR output (whitespace in the text collapsed)."""
    chunks = output.get("chunks")
    if chunks is None:
        raise InvalidInputError("--timestamps: the output has no chunks (was return_timestamps set to false?)")
    lines = []
    for chunk in chunks:
        start, end = chunk["timestamp"]
        lines.append(f"[{clock(start)} --> {clock(end)}]  {' '.join(chunk['text'].split())}".rstrip())
    return lines


def stream_text(pipe: Any, prompts: list[str], options: dict[str, Any]) -> None:
    """Write each prompt's generated text to stdout piece by piece (flushed), a newline after each."""
    for prompt in prompts:
        for piece in pipe.stream(prompt, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    pipe = pipeline(None if args.task == "auto" else args.task, args.bundle, dtype=args.dtype, device=args.device)
    check_run_flags(args, pipe)
    inputs = pipe.cli_inputs(args.inputs)
    items = inputs if isinstance(inputs, list) else [inputs]
    options = dict(args.option or [])
    if args.format is not None:
        write_transcript(pipe, args, options)
        return 0
    if args.stream and pipe.task == "automatic-speech-recognition":
        for item in items:
            for chunk in pipe.stream(item, **options):
                print(timestamp_lines({"chunks": [chunk]})[0], flush=True)
        return 0
    if args.stream:
        stream_text(pipe, items, options)
        return 0
    if args.timestamps:
        options.setdefault("return_timestamps", pipe.timestamps_option())
    output = pipe(inputs, **options)
    results = output if isinstance(inputs, list) else [output]
    if args.timestamps and not args.json:
        blocks = [timestamp_lines(result) for result in results]
        if len(blocks) > 1:
            blocks = [[f"# {name}", *lines] for name, lines in zip(args.inputs, blocks)]
        print("\n\n".join("\n".join(lines) for lines in blocks))
        return 0
    print(json.dumps(to_jsonable(output), ensure_ascii=False, indent=2))
    if args.save is not None:
        for written in save_pictures(pipe.task, items, results, Path(args.save)):
            print(f"saved {written}", file=sys.stderr)
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


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import format_report, verify_bundle

    report = verify_bundle(args.bundle, args.dtype, device=args.device)
    print(format_report(report))
    return 0 if report["passed"] else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    findings = doctor.diagnose(args.bundle, args.device)
    print(doctor.format_findings(findings))
    return doctor.exit_code(findings)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import require, serve

    try:
        require()
    except ImportError as exc:
        raise EdgetfError(str(exc)) from None
    from .serve.models import Limits

    if not Path(args.models).is_dir():
        raise EdgetfError(f"models folder {args.models!r} does not exist or is not a folder")
    limits = Limits(concurrency=args.concurrency, queue=args.queue, timeout_s=args.timeout)
    serve(
        args.models,
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get("EDGETF_API_KEY") or None,
        limits=limits,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        dtype=args.dtype,
        device=args.device,
    )
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    summary = run_batch(
        args.task,
        args.bundle,
        args.inputs,
        out=Path(args.out),
        batch_size=args.batch_size,
        options=dict(args.option or []),
        dtype=args.dtype,
        device=args.device,
        progress=not args.quiet,
    )
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


def add_serve_and_batch(sub: Any) -> None:
    serve = sub.add_parser("serve", help="HTTP server (OpenAI-compatible + /v1/pipelines) over a folder of bundles")
    serve.add_argument("models", help="folder whose bundle folders are served; their names are the model names")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (or set EDGETF_API_KEY)")
    serve.add_argument("--concurrency", type=int, default=1, help="calls running at once per model")
    serve.add_argument("--queue", type=int, default=8, help="requests waiting per model before 503")
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (504 after)")
    serve.add_argument("--max-body-mb", type=float, default=25.0, help="largest request body (413 above)")
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--device", default="cpu")
    serve.set_defaults(func=cmd_serve)
    batch = sub.add_parser("batch", help="run a task over many inputs into a JSONL file (resumable, with progress)")
    batch.add_argument("task", help="task name, or 'auto' for the bundle's own")
    batch.add_argument("bundle")
    batch.add_argument("inputs", nargs="+", help="texts, .jsonl files of texts, or files / globs / folders")
    batch.add_argument("--out", required=True, help="JSONL file; inputs already in it are skipped")
    batch.add_argument("--batch-size", type=int, default=8, help="inputs per pipeline call")
    batch.add_argument("--option", action="append", type=_parse_option, metavar="KEY=VALUE", help="pipeline option")
    batch.add_argument("--dtype", default="auto")
    batch.add_argument("--device", default="cpu")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(func=cmd_batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetf", description="run exported bundles with onnxruntime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a task on inputs and print the output as JSON (or draw, stream ...)")
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
    run.add_argument(
        "--save",
        metavar="PICTURE",
        help="object-detection, image-segmentation, depth-estimation: also draw the output over the input "
        "image and save it (several inputs: PICTURE, then PICTURE-1, PICTURE-2 ... before the extension)",
    )
    run.add_argument(
        "--timestamps",
        action="store_true",
        help="automatic-speech-recognition: print one '[start --> end]  text' line per segment (Whisper) "
        "or word (CTC) instead of JSON",
    )
    run.add_argument("--json", action="store_true", help="with --timestamps: print the JSON output (with its chunks)")
    run.add_argument(
        "--stream",
        action="store_true",
        help="text-generation: write the new text as it is generated, not JSON; automatic-speech-recognition: "
        "a '[start --> end]  text' line per segment as it is decoded",
    )
    run.add_argument(
        "--format",
        metavar="FORMAT",
        help="automatic-speech-recognition: write the transcript as srt, vtt, txt, tsv or json "
        "(with timestamps: Whisper segments, CTC words)",
    )
    run.add_argument("--output", metavar="FILE", help="with --format: write to FILE instead of stdout")
    run.set_defaults(func=cmd_run)
    info = sub.add_parser("info", help="manifest summary and available providers")
    info.add_argument("bundle")
    info.set_defaults(func=cmd_info)
    providers = sub.add_parser("providers", help="execution providers this onnxruntime can use")
    providers.set_defaults(func=cmd_providers)
    demo = sub.add_parser("demo", help="run every bundle under a folder on a built-in sample input")
    demo.add_argument("models", nargs="?", default="models")
    demo.set_defaults(func=cmd_demo)
    verify = sub.add_parser("verify", help="re-run the bundle's golden inputs here; exit 1 below its bounds")
    verify.add_argument("bundle")
    verify.add_argument("--dtype", nargs="+", help="dtypes to check (default: every dtype with golden bounds)")
    verify.add_argument("--device", default="cpu")
    verify.set_defaults(func=cmd_verify)
    doctor = sub.add_parser(
        "doctor", help="check Python, onnxruntime, providers, CPU int8 and a bundle; 1 on a problem"
    )
    doctor.add_argument("bundle", nargs="?", help="also verify this bundle's files and say which dtype loads")
    doctor.add_argument("--device", help="also require this device's provider (cuda, dml, coreml ...)")
    doctor.set_defaults(func=cmd_doctor)
    add_serve_and_batch(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EdgetfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
