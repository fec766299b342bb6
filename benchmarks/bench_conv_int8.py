"""int8 convolutions: the q8 recipe with static QDQ convs vs the MatMul-only q8, against transformers.

    python benchmarks/bench_conv_int8.py                        # DETR, GLPN, Mask2Former, Wav2Vec2 at real size
    python benchmarks/bench_conv_int8.py --models detr-resnet-50 --rounds 3 --runs 3 --threads 2

Each model is built once with random weights at its real architecture (bench_vision.py / bench_speech.py
builds) and exported twice with export's own code: ``matmul-only`` (q8 level ``all``: dynamic int8
MatMuls, convs float) and ``conv-static`` (the ladder's ``conv-static`` level: static QDQ int8 convs
calibrated on the runtime's preprocessing of the built-in inputs + dynamic MatMuls). Wav2Vec2's family
does not ask for static convs (its feature encoder misses the closeness gate); it is exported here with
the feature-encoder recipe it would get (first conv and positional conv float) to show what it buys.
Contenders run each in its own process (bench_vision.py / bench_speech.py workers), alternating, for
``--rounds`` rounds; per model: each q8 recipe's latency over transformers' (median over rounds, and the
spread of the per-round ratios), the q8 file's size, and its closeness to the fp32 graph (worst relative
L2 error of any output) on built-in inputs the calibration did not see. Ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks import bench_speech, bench_vision  # noqa: E402
from benchmarks.common import dir_size_mb, run_worker  # noqa: E402

VISION = ("detr-resnet-50", "glpn-nyu", "mask2former-swin-tiny")
SPEECH = ("wav2vec2-base",)
RECIPES = ("matmul-only", "conv-static")
# the feature-encoder recipe Wav2Vec2 would get (measured, not in the family table: see the module docstring)
WAV2VEC2_CONVS = {"op_types": ("Conv",), "float_nodes": (r"/conv_layers\.0/conv/Conv$", r"/pos_conv_embed/")}
CLIP_SECONDS = 10.0
HELD_OUT = 6  # closeness inputs, taken from the end of the built-in sets (calibration spreads from the start)


@contextlib.contextmanager
def recipe(name: str) -> Iterator[None]:
    """Export with the family's static-conv specifics removed (``matmul-only``) or, where the family has
    none (Wav2Vec2), with WAV2VEC2_CONVS (``conv-static``)."""
    from export import plan

    real = plan.family_for

    def patched(config: Any, task: str | None = None) -> Any:
        family = real(config, task)
        quant = {k: v for k, v in family.quantize.items() if k != "static_conv"}
        if name == "conv-static":
            quant["static_conv"] = family.quantize.get("static_conv", WAV2VEC2_CONVS)
        return dataclasses.replace(family, quantize=quant)

    plan.family_for = patched
    try:
        yield
    finally:
        plan.family_for = real


def build(model: str, work: Path) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, bundle) per recipe; checkpoints built once and shared."""
    out = {}
    for name in RECIPES:
        with recipe(name):
            if model in VISION:
                shared = work / "vision"
                ckpt, _ = bench_vision.paths(bench_vision.MODELS[model], shared)
                folder = work / name
                (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
                link = folder / "checkpoints" / model
                if not link.exists():
                    if not (ckpt / "config.json").is_file():
                        bench_vision.build(bench_vision.MODELS[model], shared, print)
                    link.symlink_to(ckpt.resolve())
                out[name] = bench_vision.build(bench_vision.MODELS[model], folder, print)
            else:
                from benchmarks.common import build_bundle

                entry = bench_speech.entries(False)["wav2vec2"]
                bundle, ckpt = build_bundle(entry, work / name)
                out[name] = (ckpt, bundle)
    return out


def closeness(model: str, bundle: Path) -> float:
    """Worst relative L2 error of the q8 graph vs the fp32 graph on the last HELD_OUT built-in inputs."""
    import edgetf
    from export import gates, inputs
    from export.tasks.common import record_feeds

    task = bench_vision.MODELS[model].task if model in VISION else bench_speech.TASK
    pipe = edgetf.pipeline(task, bundle, dtype="fp32", verify="none")
    store: dict[str, list[dict[str, Any]]] = {}
    record_feeds(pipe, store)
    items = [im for _, im in inputs.images()] if model in VISION else list(inputs.signals().values())
    for item in items[-HELD_OUT:]:
        pipe(item.copy() if hasattr(item, "dtype") else item)
    return float(gates.output_closeness(bundle, "q8", store)["output_rel_error"])


def time_once(model: str, contender: str, ckpt: Path, bundle: Path, args: Any, audio: Path) -> dict[str, Any]:
    if model in VISION:
        work = bundle.parent.parent  # <work>/<recipe>/bundles/<model>
        cli = ["--worker", contender, "--models", model, "--work", str(work)]
        cli += ["--threads", str(args.threads), "--runs", str(args.runs)]
        env = {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        return run_worker(ROOT / "benchmarks" / "bench_vision.py", cli, env=env)
    return bench_speech.run_worker(contender, model, bundle, ckpt, audio, {}, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=VISION + SPEECH, default=list(VISION + SPEECH))
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (each contender once per round)")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per worker")
    parser.add_argument("--threads", type=int, default=2)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetf" / "bench-conv-int8"
    parser.add_argument("--work", default=str(cache), help=f"checkpoint and bundle cache (default {cache})")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    work = Path(args.work)
    import numpy as np

    audio = Path(tempfile.mkdtemp(prefix="edgetf-conv-bench-")) / "clip.npy"
    np.save(audio, bench_speech.clip(CLIP_SECONDS))
    results = []
    for model in args.models:
        built = build(model, work)
        contenders = [("transformers", RECIPES[0]), *(("edgetf-q8", r) for r in RECIPES)]
        times: dict[str, list[float]] = {r: [] for r in ("transformers", *RECIPES)}
        for _ in range(args.rounds):
            for contender, name in contenders:
                ckpt, bundle = built[name]
                row = time_once(model, contender, ckpt, bundle, args, audio)
                if "median_ms" in row:
                    value = row["median_ms"]
                elif "median_s" in row:
                    value = row["median_s"] * 1000
                else:
                    raise SystemExit(f"{model} {contender} ({name}): {row.get('error', row)}")
                times["transformers" if contender == "transformers" else name].append(value)
                print(f"  {model} {contender} {name}: {value:.0f} ms", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"model": model, "transformers_ms": statistics.median(times["transformers"])}
        for name in RECIPES:
            ratios = [t / ref for t, ref in zip(times[name], times["transformers"])]
            bundle = built[name][1]
            recipe_used = json.loads((bundle / "edgetf.json").read_text())["dtypes"]["q8"]["recipe"]["model"]
            row[name] = {
                "level": recipe_used.get("level"),
                "ms": statistics.median(times[name]),
                "vs_transformers": statistics.median(ratios),
                "ratio_spread": [min(ratios), max(ratios)],
                "q8_mb": dir_size_mb(sorted((bundle / "onnx").glob("model_quantized.onnx*"))),
                "output_rel_error": closeness(model, bundle),
            }
        results.append(row)
    print("| model | transformers | q8 MatMul-only / transformers | q8 conv-static / transformers | rel. error "
          "(MatMul-only, conv-static) | q8 MB (MatMul-only, conv-static) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in results:
        a, b = r["matmul-only"], r["conv-static"]
        print(
            f"| {r['model']} | {r['transformers_ms']:.0f} ms | {a['vs_transformers']:.2f} "
            f"({a['ratio_spread'][0]:.2f}-{a['ratio_spread'][1]:.2f}) | {b['vs_transformers']:.2f} "
            f"({b['ratio_spread'][0]:.2f}-{b['ratio_spread'][1]:.2f}) | {a['output_rel_error']:.3f}, "
            f"{b['output_rel_error']:.3f} | {a['q8_mb']:.0f}, {b['q8_mb']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
