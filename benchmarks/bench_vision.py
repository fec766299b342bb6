"""Vision latency: edgetf (fp32 and q8) against the transformers pipeline, on realistic-size random weights.

    python benchmarks/bench_vision.py            # ViT-base, ConvNeXT-tiny, DETR-ResNet-50, GLPN, Mask2Former-Swin-tiny
    python benchmarks/bench_vision.py --quick    # ViT-base and ConvNeXT-tiny, fewer runs
    python benchmarks/bench_vision.py --models vit-base detr-resnet-50 --runs 10 --threads 4 --json out.json

Each model is built once with random weights at its real architecture (same configs as the hub
checkpoints, no download), exported with ``python -m export``'s own code to fp32 and q8 bundles
(cached under --work), and timed end to end on the same 640x480 photo-like PIL image: the
transformers pipeline (fp32, PyTorch), edgetf fp32 and edgetf q8, interleaved run by run so a busy
machine slows all three alike; the median is reported. ``preprocess`` is edgetf's image loading and
processing alone (RGB conversion, resize, normalise, batch), shown as a share of edgetf's q8 total.
Both runtimes get the same thread count. Numbers are ratios on this machine, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

from benchmarks.common import dir_size_mb  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
COCO_LABELS = 91  # DETR's COCO head (incl. N/A ids)


@dataclass
class Model:
    name: str
    task: str
    architecture: str
    config: Callable[[], Any]
    processor: Callable[[], Any]
    note: str = ""
    call: dict[str, Any] = field(default_factory=dict)


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
        Model("vit-base", "image-classification", "ViTForImageClassification", _vit, _processor("ViTImageProcessor")),
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
        ),
        Model(
            "detr-resnet-50",
            "object-detection",
            "DetrForObjectDetection",
            _detr,
            _processor("DetrImageProcessor"),
            note="transformers ResNet-50 backbone; 640x480 -> 1066x800",
        ),
        Model("glpn-nyu", "depth-estimation", "GLPNForDepthEstimation", _glpn, _processor("GLPNImageProcessor")),
        Model(
            "mask2former-swin-tiny",
            "image-segmentation",
            "Mask2FormerForUniversalSegmentation",
            _mask2former,
            _processor("Mask2FormerImageProcessor", size={"height": 384, "width": 384}),
            note="traced and run at 384x384",
        ),
    )
}
QUICK = ("vit-base", "convnext-tiny")


def build(model: Model, work: Path, log: Callable[[str], None]) -> tuple[Path, Path]:
    """Random-weight checkpoint and its fp32 + q8 bundle (cached in ``work``)."""
    import torch
    import transformers

    from export.build import export_entry
    from export.catalog import Entry

    checkpoint, bundle = work / "checkpoints" / model.name, work / "bundles" / model.name
    if not (checkpoint / "config.json").is_file():
        log(f"  building random-weight {model.name}")
        torch.manual_seed(0)
        net = getattr(transformers, model.architecture)(model.config()).eval()
        net.save_pretrained(checkpoint)
        model.processor().save_pretrained(checkpoint)
    if not (bundle / "edgetf.json").is_file():
        log(f"  exporting {model.name} to fp32 and q8")
        entry = Entry(name=model.name, task=model.task, source=str(checkpoint), dtypes=("fp32", "q8"))
        result = export_entry(entry, bundle.parent, tiny_model=False, verify=False, log=log)
        if result.status != "ok":
            raise RuntimeError(f"export of {model.name} failed: {result.detail}")
    return checkpoint, bundle


def photo(width: int = 640, height: int = 480) -> Any:
    from edgetf.vision.samples import noise, shapes

    image = shapes(width, height)
    image.paste(noise(width // 4, height // 4, seed=5), (width // 2, height // 2))
    return image


def bench(model: Model, work: Path, runs: int, threads: int, log: Callable[[str], None]) -> dict[str, Any]:
    import torch
    import transformers

    import edgetf
    from edgetf.vision import load_image

    checkpoint, bundle = build(model, work, log)
    torch.set_num_threads(threads)
    options = edgetf.SessionOptions(intra_op_threads=threads)
    reference = transformers.pipeline(model.task, model=str(checkpoint), device="cpu")
    fp32 = edgetf.pipeline(model.task, bundle, dtype="fp32", session_options=options)
    q8 = edgetf.pipeline(model.task, bundle, dtype="q8", session_options=options)
    image = photo()

    def preprocess() -> Any:
        return q8.processor([load_image(image)])

    contenders = {
        "transformers_fp32": lambda: reference(image, **model.call),
        "edgetf_fp32": lambda: fp32(image, **model.call),
        "edgetf_q8": lambda: q8(image, **model.call),
        "preprocess": preprocess,
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(2):  # warm-up: session creation, first-run allocations
        for fn in contenders.values():
            fn()
    for _ in range(runs):
        for key, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1000)
    median = {k: statistics.median(v) for k, v in times.items()}
    pixels = preprocess()["pixel_values"].shape
    return {
        "model": model.name,
        "task": model.task,
        "input": f"{image.width}x{image.height}",
        "model_input": list(pixels),
        "note": model.note,
        "ms": {k: round(v, 2) for k, v in median.items()},
        "all_ms": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "speedup_fp32": round(median["transformers_fp32"] / median["edgetf_fp32"], 2),
        "speedup_q8": round(median["transformers_fp32"] / median["edgetf_q8"], 2),
        "preprocess_share_q8": round(median["preprocess"] / median["edgetf_q8"], 4),
        "preprocess_share_fp32": round(median["preprocess"] / median["edgetf_fp32"], 4),
        "bundle_mb": {
            d: round(dir_size_mb([bundle / "onnx" / f]), 1)
            for d, f in (("fp32", "model.onnx"), ("q8", "model_quantized.onnx"))
        },
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':24} {'input':>16} {'transformers':>12} {'edgetf fp32':>11} {'edgetf q8':>10} "
        f"{'x fp32':>7} {'x q8':>6} {'preproc':>8} {'share q8':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ms, shape = r["ms"], r["model_input"]
        size = f"{shape[-1]}x{shape[-2]}"
        lines.append(
            f"{r['model']:24} {size:>16} {ms['transformers_fp32']:10.1f}ms {ms['edgetf_fp32']:9.1f}ms "
            f"{ms['edgetf_q8']:8.1f}ms {r['speedup_fp32']:6.2f}x {r['speedup_q8']:5.2f}x {ms['preprocess']:6.2f}ms "
            f"{100 * r['preprocess_share_q8']:7.1f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, 5 runs")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="models to run (default: all)")
    parser.add_argument("--runs", type=int, help="timed runs per contender (default 10, quick 5)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="threads for both runtimes")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetf" / "bench-vision"
    parser.add_argument("--work", default=str(cache), help=f"checkpoint and bundle cache (default {cache})")
    parser.add_argument("--json", help="write the results here (default: <work>/bench_vision.json)")
    args = parser.parse_args(argv)
    names = args.models or (list(QUICK) if args.quick else list(MODELS))
    runs = args.runs or (5 if args.quick else 10)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    import onnxruntime
    import torch
    import transformers

    rows = []
    for name in names:
        log(f"[{name}]")
        rows.append(bench(MODELS[name], work, runs, args.threads, log))
        log(table(rows[-1:]).splitlines()[-1])
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "runs": runs,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "results": rows,
    }
    out = Path(args.json) if args.json else work / "bench_vision.json"
    out.write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(f"\nmedian of {runs} interleaved runs, {args.threads} threads; JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
