"""Vision latency: edgetf q8/fp32 vs transformers, optimum ORTModel and bare onnxruntime, realistic-size random weights.

    python benchmarks/bench_vision.py            # ViT-base, ConvNeXT-tiny, DETR-ResNet-50, GLPN, Mask2Former-Swin-tiny
    python benchmarks/bench_vision.py --quick    # ViT-base and ConvNeXT-tiny, fewer runs
    python benchmarks/bench_vision.py --models vit-base detr-resnet-50 --runs 10 --threads 4 --json out.json

Each model is built once with random weights at its real architecture (same configs as the hub
checkpoints, no download), exported with ``python -m export``'s own code to fp32 and q8 bundles
(cached under --work), and timed end to end at batch 1 on the same 640x480 photo-like PIL image.
Contenders, each in its own process with the same thread count (benchmarks/common.py ``run_worker``):

- ``transformers``: the transformers pipeline on the checkpoint (PyTorch fp32);
- ``optimum-fp32/q8``: optimum's ORTModel on the bundle's own ONNX file inside the transformers
  pipeline, where optimum-onnx has a class for the task (image classification only; the others say why);
- ``edgetf-fp32/q8``: ``edgetf.pipeline`` with default options;
- ``bare-fp32/q8``: one ``onnxruntime.InferenceSession`` on the same file with edgetf's session
  settings, run on the pixel values edgetf's preprocessing made beforehand: the floor for edgetf.

Per contender: median and p95 latency, time relative to transformers, cold start (process spawn to
first result: imports, model load, first call), peak RSS of its own process (VmHWM) and the size on
disk of what it loads. For edgetf, ``overhead vs bare`` is (edgetf - bare) / edgetf against the bare
contender's process; since separate processes on a busy machine drift apart, the edgetf worker also
times its own session's bare ``run`` on pre-made feeds interleaved with its calls (``in-process``),
and its preprocessing alone (image conversion, resize, normalise, batch) as a share of the call.
Numbers are ratios on this machine, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.common import (  # noqa: E402
    add_ratios,
    dir_size_mb,
    run_rounds,
    run_worker,
    table,
    timed,
    timed_interleaved,
    worker_result,
)
from benchmarks.contenders import openvino_specs, save_feeds  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
COCO_LABELS = 91  # DETR's COCO head (incl. N/A ids)
CONTENDERS = ("transformers", "optimum-fp32", "edgetf-fp32", "bare-fp32", "optimum-q8", "edgetf-q8", "bare-q8")
FILES = {"fp32": "model.onnx", "q8": "model_quantized.onnx"}


@dataclass
class Model:
    name: str
    task: str
    architecture: str
    config: Callable[[], Any]
    processor: Callable[[], Any]
    note: str = ""
    call: dict[str, Any] = field(default_factory=dict)
    optimum: str | None = None  # optimum.onnxruntime class that fits the task, if any
    no_optimum: str = ""  # why there is none
    runs: int = 10  # timed runs per contender in a full run (the slow models get fewer)


def _labels(n: int) -> dict[str, Any]:
    id2label = {i: f"class_{i}" for i in range(n)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def _vit():
    import transformers

    return transformers.ViTConfig(**_labels(1000))  # ViT-B/16 at 224: hidden 768, 12 layers, 12 heads


def _convnext():
    import transformers

    return transformers.ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], **_labels(1000))


def _detr():
    import transformers

    backbone = transformers.ResNetConfig(
        layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], out_features=["stage4"]
    )
    return transformers.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone=None, backbone_config=backbone,
        **_labels(COCO_LABELS),
    )  # fmt: skip


def _glpn():
    import transformers

    # vinvino02/glpn-nyu: MiT-b4 encoder
    return transformers.GLPNConfig(
        depths=[3, 8, 27, 3], hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=64
    )


def _mask2former():
    import transformers

    swin = transformers.SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    return transformers.Mask2FormerConfig(backbone_config=swin, **_labels(133))  # COCO panoptic


def _processor(name: str, **kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers

        return getattr(transformers, name)(**kwargs)

    return make


MODELS = {
    m.name: m
    for m in (
        Model(
            "vit-base",
            "image-classification",
            "ViTForImageClassification",
            _vit,
            _processor("ViTImageProcessor"),
            optimum="ORTModelForImageClassification",
        ),
        Model(
            "convnext-tiny",
            "image-classification",
            "ConvNextForImageClassification",
            _convnext,
            _processor(
                "ConvNextImageProcessor",
                size={"shortest_edge": 224},
                resample=3,
                image_mean=IMAGENET_MEAN,
                image_std=IMAGENET_STD,
            ),
            optimum="ORTModelForImageClassification",
        ),
        Model(
            "detr-resnet-50",
            "object-detection",
            "DetrForObjectDetection",
            _detr,
            _processor("DetrImageProcessor"),
            note="transformers ResNet-50 backbone; 640x480 -> 1066x800",
            no_optimum="optimum-onnx 0.1.0 has no ORTModel class for object detection",
            runs=3,
        ),
        Model(
            "glpn-nyu",
            "depth-estimation",
            "GLPNForDepthEstimation",
            _glpn,
            _processor("GLPNImageProcessor"),
            no_optimum="optimum-onnx 0.1.0 has no ORTModel class for depth estimation "
            "(ORTModelForImageToImage is super-resolution: it returns `reconstruction`, not `predicted_depth`)",
            runs=3,
        ),
        Model(
            "mask2former-swin-tiny",
            "image-segmentation",
            "Mask2FormerForUniversalSegmentation",
            _mask2former,
            _processor("Mask2FormerImageProcessor", size={"height": 384, "width": 384}),
            note="traced and run at 384x384",
            no_optimum="optimum-onnx 0.1.0 has no class for universal (panoptic) segmentation: "
            "ORTModelForSemanticSegmentation returns one `logits` map, not Mask2Former's class and mask queries",
            runs=3,
        ),
    )
}
QUICK = ("vit-base", "convnext-tiny")


def build(model: Model, work: Path, log: Callable[[str], None]) -> tuple[Path, Path]:
    """Random-weight checkpoint and its fp32 + q8 bundle (cached in ``work``)."""
    checkpoint, bundle = paths(model, work)
    if not (checkpoint / "config.json").is_file():
        import torch
        import transformers

        log(f"  building random-weight {model.name}")
        torch.manual_seed(0)
        net = getattr(transformers, model.architecture)(model.config()).eval()
        net.save_pretrained(checkpoint)
        model.processor().save_pretrained(checkpoint)
    if not (bundle / "edgetf.json").is_file():
        from export.build import export_entry
        from export.catalog import Entry

        log(f"  exporting {model.name} to fp32 and q8")
        entry = Entry(name=model.name, task=model.task, source=str(checkpoint), dtypes=("fp32", "q8"))
        result = export_entry(entry, bundle.parent, tiny_model=False, verify=False, log=log)
        if result.status != "ok":
            raise RuntimeError(f"export of {model.name} failed: {result.detail}")
    return checkpoint, bundle


def paths(model: Model, work: Path) -> tuple[Path, Path]:
    return work / "checkpoints" / model.name, work / "bundles" / model.name


def photo(width: int = 640, height: int = 480) -> Any:
    from edgetf.vision.samples import noise, shapes

    image = shapes(width, height)
    image.paste(noise(width // 4, height // 4, seed=5), (width // 2, height // 2))
    return image


# -- workers (one process per contender) ----------------------------------------------------------------
def session_options(threads: int) -> Any:
    """onnxruntime options exactly as edgetf builds them by default, with ``threads`` intra-op threads."""
    from edgetf.session import SessionOptions

    return SessionOptions(intra_op_threads=threads).to_ort()


def bare_feeds(session: Any, feeds: dict[str, Any]) -> dict[str, Any]:
    """The declared inputs of ``session`` from edgetf's feeds, cast to the declared types."""
    import numpy as np

    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
    return {i.name: np.asarray(feeds[i.name], dtype=types.get(i.type, np.float32)) for i in session.get_inputs()}


def worker(name: str, model: Model, work: Path, threads: int, runs: int) -> None:
    kind, _, dtype = name.partition("-")
    checkpoint, bundle = paths(model, work)
    image = photo()
    extra: dict[str, Any] = {}
    if kind == "transformers":
        import torch
        import transformers

        torch.set_num_threads(threads)
        pipe = transformers.pipeline(model.task, model=str(checkpoint), device="cpu")
        one = lambda: pipe(image, **model.call)  # noqa: E731
    elif kind == "optimum":
        import optimum.onnxruntime
        import transformers

        ort_model = getattr(optimum.onnxruntime, model.optimum).from_pretrained(
            bundle, subfolder="onnx", file_name=FILES[dtype], session_options=session_options(threads)
        )
        processor = transformers.AutoImageProcessor.from_pretrained(bundle)
        pipe = transformers.pipeline(model.task, model=ort_model, image_processor=processor)
        one = lambda: pipe(image, **model.call)  # noqa: E731
    elif kind == "edgetf":
        import edgetf

        options = edgetf.SessionOptions(intra_op_threads=threads)
        pipe = edgetf.pipeline(model.task, bundle, dtype=dtype, session_options=options)
        one = lambda: pipe(image, **model.call)  # noqa: E731
    else:  # bare onnxruntime on pixel values edgetf's preprocessing made beforehand
        import onnxruntime as ort

        import edgetf

        prep = edgetf.pipeline(model.task, bundle, dtype=dtype)  # its processor only: no session is opened
        path = bundle / "onnx" / FILES[dtype]
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        feeds = bare_feeds(session, next(prep.chunks([image])).feeds)
        one = lambda: session.run(None, feeds)  # noqa: E731
    one()
    first = time.time()
    warmup = 1 if model.runs < 10 else 2
    if kind == "edgetf":  # the call, its preprocessing and its own session's bare run, interleaved
        chunk = next(pipe.chunks([image]))
        sess = pipe.session()
        feeds = bare_feeds(sess.ort_session, chunk.feeds)
        stats = timed_interleaved(
            {
                "call": one,
                "preprocess": lambda: next(pipe.chunks([image])),
                "bare": lambda: sess.ort_session.run(sess.output_names, feeds),
            },
            runs,
            warmup,
        )
        lat = stats["call"]
        extra = {
            "model_input": list(chunk.feeds["pixel_values"].shape),
            "preprocess_ms": stats["preprocess"]["median_ms"],
            "preprocess_share": stats["preprocess"]["median_ms"] / lat["median_ms"],
            "bare_in_process_ms": stats["bare"]["median_ms"],
            "overhead_in_process": (lat["median_ms"] - stats["bare"]["median_ms"]) / lat["median_ms"],
        }
    else:
        lat = timed(one, runs, warmup)
    worker_result({**lat, **extra}, first)


def model_feeds(model: Model, work: Path) -> dict[str, Any]:
    """The model inputs edgetf's preprocessing makes from the benchmark photo (what bare and OpenVINO run on)."""
    import numpy as np

    import edgetf

    _, bundle = paths(model, work)
    prep = edgetf.pipeline(model.task, bundle, dtype="fp32")  # its processor only: no session is opened
    feeds = next(prep.chunks([photo()])).feeds
    return {k: np.asarray(v) for k, v in feeds.items() if isinstance(v, np.ndarray)}


# -- parent -------------------------------------------------------------------------------------------------
def bench(
    model: Model, work: Path, runs: int, threads: int, log: Callable[[str], None], rounds: int = 1
) -> list[dict[str, Any]]:
    """Every contender ``rounds`` times, alternating, each call a fresh process (common.run_rounds): per
    contender the median of its per-process medians and their spread."""
    checkpoint, bundle = build(model, work, log)
    static: dict[str, dict[str, Any]] = {}  # per contender: what does not need a run (size, skip note)
    specs: dict[str, Callable[[], dict]] = {}
    env = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    for name in CONTENDERS:
        row: dict[str, Any] = {"model": model.name, "task": model.task, "contender": name}
        dtype = name.partition("-")[2]
        row["size_mb"] = (
            dir_size_mb([bundle / "onnx" / FILES[dtype]]) if dtype else dir_size_mb(list(checkpoint.iterdir()))
        )
        static[name] = row
        if name.startswith("optimum") and not model.optimum:
            row["note"] = model.no_optimum
            log(f"  {name}: skipped ({model.no_optimum})")
            continue
        args = ["--worker", name, "--models", model.name, "--work", str(work)]
        args += ["--threads", str(threads), "--runs", str(runs)]
        specs[name] = lambda args=args: run_worker(Path(__file__), args, env=env)
    if os.environ.get("EDGETF_BENCH_NO_CONTENDERS") != "1":
        feeds = save_feeds(model_feeds(model, work), work, model.name)
        onnx_fp32 = bundle / "onnx" / FILES["fp32"]
        for name, spawn in openvino_specs(onnx_fp32, feeds, threads, runs, work / "openvino").items():
            static[name] = {"model": model.name, "task": model.task, "contender": name}
            specs[name] = spawn
    results = run_rounds(specs, rounds)
    rows = [{**row, **results.get(name, {})} for name, row in static.items()]
    by_name = {r["contender"]: r for r in rows}
    base = by_name["transformers"]
    for r in rows:
        if "median_ms" not in r:
            continue
        if "median_ms" in base:
            r["vs_transformers"] = r["median_ms"] / base["median_ms"]
        bare = by_name.get("bare-" + r["contender"].partition("-")[2], {})
        if r["contender"].startswith("edgetf") and "median_ms" in bare:
            r["overhead_vs_bare"] = (r["median_ms"] - bare["median_ms"]) / r["median_ms"]
    add_ratios(rows, "edgetf-q8", {"vs_openvino_int8": "openvino-int8", "vs_optimum_q8": "optimum-q8"})
    shape = next((r["model_input"] for r in rows if "model_input" in r), None)
    for r in rows:
        r["input"] = f"{shape[-1]}x{shape[-2]}" if shape else "—"
    return rows


COLUMNS = [
    ("model", "model", ""),
    ("input", "model input", ""),
    ("contender", "contender", ""),
    ("median_ms", "median ms", ".1f"),
    ("p95_ms", "p95 ms", ".1f"),
    ("vs_transformers", "× transformers time", ".2f"),
    ("cold_start_s", "cold start s", ".2f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("size_mb", "on disk MB", ".0f"),
    ("overhead_vs_bare", "overhead vs bare", ".1%"),
    ("overhead_in_process", "overhead vs bare (in-process)", ".1%"),
    ("preprocess_share", "preprocess share", ".1%"),
    ("vs_openvino_int8", "× OpenVINO int8", ".2f"),
    ("spread", "process spread", ".0%"),
]


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        model = MODELS[name]
        parts = [model.note] if model.note else []
        if not model.optimum:
            parts.append(f"optimum: — ({model.no_optimum})")
        parts += [
            f"{r['contender']}: ERROR {r['error'].strip().splitlines()[-1][:160]}"
            for r in rows
            if r["model"] == name and "error" in r
        ]
        if parts:
            out.append(f"- {name}: " + "; ".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, 5 runs")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="models to run (default: all)")
    parser.add_argument(
        "--runs", type=int, help="timed runs per contender (default per model: 10, 3 for the slow ones; quick 5)"
    )
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="threads for every contender")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetf" / "bench-vision"
    parser.add_argument("--work", default=str(cache), help=f"checkpoint and bundle cache (default {cache})")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per contender, alternating (default 1)")
    parser.add_argument("--json", help="write the results here (default: <work>/bench_vision.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.worker:
        worker(args.worker, MODELS[args.models[0]], work, args.threads, args.runs)
        return 0
    names = args.models or (list(QUICK) if args.quick else list(MODELS))
    work.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    import onnxruntime
    import torch
    import transformers

    rows: list[dict[str, Any]] = []
    runs_used = {}
    t0 = time.perf_counter()
    for name in names:
        model = MODELS[name]
        runs_used[name] = args.runs or (5 if args.quick else model.runs)
        log(f"[{name}] {runs_used[name]} runs")
        rows.extend(bench(model, work, runs_used[name], args.threads, log, args.rounds))
    report = {
        "benchmark": "vision",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "runs": runs_used,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.json) if args.json else work / "bench_vision.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nvision, batch 1, 640x480 image, {args.threads} threads, runs per model {runs_used}")
    print(table(rows, COLUMNS))
    print("\n".join(notes(rows)))
    print(f"\nJSON: {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
