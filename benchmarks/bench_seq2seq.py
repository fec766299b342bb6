"""Encoder-decoder beam search: the encoder's cross-attention cache shared across beams vs gathered per step.

    python benchmarks/bench_seq2seq.py                 # BART-base sizes (random weights), 512 input tokens
    python benchmarks/bench_seq2seq.py --quick         # the catalog's tiny distilbart: a smoke run
    python benchmarks/bench_seq2seq.py --json out.json --threads 2 --tokens 48

Summarization-style beam search (num_beams=4, the catalog's n-gram/length settings, a fixed number of new
tokens so both variants run the same steps) over edgetf's ``Seq2SeqDecoder`` with
``share_encoder_cache=True`` (reorders gather only the decoder self-attention cache) and ``False`` (every
beam reorder also copies the cross-attention cache and encoder states: the behaviour before). One worker
process per dtype runs both variants in alternating rounds on the same sessions and encoder output;
times are the decode loop alone (the encoder runs once, timed apart). Prints a table and JSON; the
machine may be shared: compare the ratio. Needs the export extra to build the model once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's edgetf and export, not an installed copy
from benchmarks.common import CACHE, build_bundle, run_worker, table, worker_result  # noqa: E402

TASK = "summarization"
BART_BASE = {
    "model_type": "bart",
    "d_model": 768,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 12,
    "decoder_attention_heads": 12,
    "encoder_ffn_dim": 3072,
    "decoder_ffn_dim": 3072,
    "max_position_embeddings": 1024,
    "vocab_size": 50265,  # the real output-layer size; the locally trained tokenizer is smaller
}


def entry(quick: bool) -> Any:
    """The catalog's distilbart-cnn recipe (--quick) or the same at BART-base sizes."""
    from dataclasses import replace

    from export import catalog

    tiny = catalog.get("distilbart-cnn")
    if quick:
        return tiny
    recipe = {**tiny.tiny, "config": BART_BASE}
    recipe["tokenizer"] = {**tiny.tiny["tokenizer"], "model_max_length": 1024}
    return replace(tiny, name="bench-bart-base", source="facebook/bart-base", tiny=recipe)


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    import edgetf
    from edgetf.generation import Seq2SeqDecoder, generate
    from edgetf.session import SessionOptions
    from export.catalog import long_text

    opts = SessionOptions(intra_op_threads=args.threads, inter_op_threads=1)
    pipe = edgetf.pipeline(TASK, args.bundle, dtype=args.dtype, session_options=opts, verify="none")
    ids = pipe.tokenizer.encode(long_text(20 * args.input_tokens), add_special_tokens=False).ids
    text = pipe.tokenizer.decode(ids[: args.input_tokens - 2])
    feeds = pipe.encode([text], {"truncation": True})
    start = time.perf_counter()
    hidden = pipe.session("encoder_model").run(feeds)["last_hidden_state"]
    encoder_s = time.perf_counter() - start
    gen = pipe.resolve({"num_beams": args.beams, "max_new_tokens": args.tokens, "min_new_tokens": args.tokens})
    decoder = pipe.session("decoder_model_merged")
    start_ids = np.full((1, 1), gen.decoder_start_token_id, dtype=np.int64)

    def run(share: bool) -> tuple[float, list[int]]:
        dec = Seq2SeqDecoder(decoder, hidden, feeds["attention_mask"], pipe.bundle.config, share_encoder_cache=share)
        t0 = time.perf_counter()
        out = generate(dec, start_ids, gen, max_positions=pipe.max_positions)
        return time.perf_counter() - t0, out.sequences[0].tolist()

    first = time.perf_counter()
    run(True)  # warm-up
    times: dict[str, list[float]] = {"shared": [], "gathered": []}
    sequences = {}
    for _ in range(args.rounds):
        for name, share in (("gathered", False), ("shared", True)):
            seconds, sequences[name] = run(share)
            times[name].append(seconds)
    payload = {
        "dtype": args.dtype,
        "input_tokens": int(feeds["input_ids"].shape[1]),
        "new_tokens": len(sequences["shared"]) - 1,
        "encoder_s": encoder_s,
        "times": times,
        "same_sequences": sequences["shared"] == sequences["gathered"],
    }
    worker_result(payload, first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny catalog distilbart, 1 round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per run (default 48; quick 16)")
    parser.add_argument("--input-tokens", type=int, default=None, help="encoder input length (default 512; quick 200)")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=None, help="alternating timed rounds (default 3; quick 1)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "q8"])
    parser.add_argument("--json", default=None, help="write the JSON result here too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tokens = args.tokens or (16 if args.quick else 48)
    args.input_tokens = args.input_tokens or (200 if args.quick else 512)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.worker:
        worker(args)
        return 0

    bundle, _ = build_bundle(entry(args.quick), CACHE)
    env = {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    rows = []
    for dtype in args.dtypes:
        common = ["--bundle", str(bundle), "--dtype", dtype, "--threads", str(args.threads), "--beams", str(args.beams)]
        common += ["--tokens", str(args.tokens), "--input-tokens", str(args.input_tokens)]
        raw = run_worker(Path(__file__), ["--worker", *common, "--rounds", str(args.rounds)], env=env)
        if "error" in raw:
            print(f"{dtype} failed:\n{raw['error']}", file=sys.stderr)
            continue
        gathered, shared = (statistics.median(raw["times"][k]) for k in ("gathered", "shared"))
        rows.append(
            {
                **{k: raw[k] for k in ("dtype", "input_tokens", "new_tokens", "encoder_s", "same_sequences")},
                "gathered_s": gathered,
                "shared_s": shared,
                "speedup": gathered / shared,
                "gathered_ms_per_step": 1e3 * gathered / raw["new_tokens"],
                "shared_ms_per_step": 1e3 * shared / raw["new_tokens"],
                "times": raw["times"],
                "peak_rss_mb": raw["peak_rss_mb"],
            }
        )
    columns = [
        ("dtype", "dtype", ""),
        ("input_tokens", "input tok", ""),
        ("new_tokens", "new tok", ""),
        ("gathered_ms_per_step", "gathered ms/step", ".1f"),
        ("shared_ms_per_step", "shared ms/step", ".1f"),
        ("speedup", "speed-up", ".2f"),
        ("encoder_s", "encoder s", ".2f"),
        ("same_sequences", "same tokens", ""),
    ]
    name = entry(args.quick).name
    print(f"\n{name}, {args.beams} beams, {args.threads} threads, median of {args.rounds} alternating rounds")
    print(table(rows, columns))
    document = {
        "model": name,
        "beams": args.beams,
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": rows,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
