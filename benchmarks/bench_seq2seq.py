"""Encoder-decoder beam search: edgetf q8 against CTranslate2 int8 and transformers, and the encoder's
cross-attention cache shared across beams vs gathered per step.

    python benchmarks/bench_seq2seq.py                 # BART-base and t5-small sizes (random weights), 512 input tokens
    python benchmarks/bench_seq2seq.py --quick         # the catalog's tiny distilbart and t5: a smoke run
    python benchmarks/bench_seq2seq.py --json out.json --threads 2 --tokens 48 --parts contenders --models t5

``contenders`` (BART and T5): edgetf q8 (the bundle's encoder + ``Seq2SeqDecoder`` beam loop, as the
summarization/translation pipelines run it, tokenization left out), CTranslate2 int8 (``Translator`` on the
same random-weight checkpoint, converted with its ``TransformersConverter``; run from the contender venv,
``EDGETF_BENCH_PYTHON``, skipped with the reason without it) and transformers ``generate`` (PyTorch fp32):
the SAME input ids, beams, n-gram/length settings and a FORCED output length (min = max new tokens), each
process timing encoder + decode; processes alternate over the rounds. The emitted lengths are reported;
where they differ the ratios compare time per generated token. The ``edgetf-q8`` row carries
``vs_ctranslate2`` and ``vs_transformers`` (time ratios: below 1, edgetf faster) for suite.py's anchors.
On a machine whose cores other processes share, spinning worker threads (onnxruntime's and OpenMP's
default) can slow a contender many times over (PyTorch's most): ``--no-spin`` makes every engine's idle
threads sleep instead.

``cache`` (BART): summarization-style beam search (num_beams=4, the catalog's n-gram/length settings, a
fixed number of new tokens so both variants run the same steps) over edgetf's ``Seq2SeqDecoder`` with
``share_encoder_cache=True`` (reorders gather only the decoder self-attention cache) and ``False`` (every
beam reorder also copies the cross-attention cache and encoder states: the behaviour before). One worker
process per dtype runs both variants in alternating rounds on the same sessions and encoder output;
times are the decode loop alone (the encoder runs once, timed apart).

Prints tables and JSON; the machine may be shared: compare the ratios. Needs the export extra to build the
models once.
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
from benchmarks.common import CACHE, build_bundle, run_rounds, run_worker, table, worker_result  # noqa: E402

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


T5_SMALL = {
    "d_model": 512,
    "d_ff": 2048,
    "d_kv": 64,
    "num_layers": 6,
    "num_decoder_layers": 6,
    "num_heads": 8,
    "vocab_size": 32128,  # the real output-layer size; the locally trained tokenizer is smaller
}
# bench model -> (catalog entry of its tiny recipe, config at the real model's sizes, source named in the bundle)
MODELS = {
    "bart": ("distilbart-cnn", BART_BASE, "facebook/bart-base"),
    "t5": ("t5-small", T5_SMALL, "google-t5/t5-small"),
}


def entry(quick: bool, model: str = "bart") -> Any:
    """The catalog's tiny recipe (--quick) or the same at the real model's sizes: distilbart-cnn's at
    BART-base sizes, t5-small's (its task_specific_params kept) at t5-small sizes."""
    from dataclasses import replace

    from export import catalog

    name, sizes, source = MODELS[model]
    tiny = catalog.get(name)
    if quick:
        return tiny
    config = sizes if model == "bart" else {**tiny.tiny["config"], **sizes}
    recipe = {**tiny.tiny, "config": config}
    max_length = 1024 if model == "bart" else 512
    recipe["tokenizer"] = {**tiny.tiny["tokenizer"], "model_max_length": max_length}
    return replace(tiny, name=f"bench-{source.split('/')[-1]}", source=source, tiny=recipe)


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


# -- contenders: edgetf q8, CTranslate2 int8, transformers on the same ids and forced length ------------------
EDGETF, CT2, TORCH = "edgetf-q8", "ctranslate2-int8", "transformers-fp32"
ROW_KEYS = ("median_ms", "process_medians_ms", "spread", "new_tokens", "engine", "peak_rss_mb")
ROW_KEYS += ("encoder_ms", "decoder_onnx_ms", "loop_ms")


def write_job(bundle: Path, task: str, input_tokens: int, beams: int, tokens: int, folder: Path) -> Path:
    """The job every contender runs, as JSON in ``folder``: ``input_ids`` (the bundle tokenizer's encoding of
    the catalog's long text with its special tokens, cut to ``input_tokens``), ``beams``, ``tokens`` (forced
    new tokens) and the bundle's ``no_repeat_ngram_size`` and ``length_penalty``."""
    from tokenizers import Tokenizer

    from export.catalog import long_text

    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tokenizer.enable_truncation(input_tokens)
    ids = tokenizer.encode(long_text(20 * input_tokens)).ids
    gen_path = bundle / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    job = {
        "task": task,
        "input_ids": ids,
        "beams": beams,
        "tokens": tokens,
        "no_repeat_ngram_size": int(gen.get("no_repeat_ngram_size") or 0),
        "length_penalty": float(gen.get("length_penalty", 1.0)),
    }
    path = folder / f"seq2seq-job-{bundle.name}.json"
    path.write_text(json.dumps(job))
    return path


def timed_calls(call: Any, runs: int) -> tuple[list[float], Any, float]:
    """(milliseconds of each of ``runs`` timed calls after one warm-up, the last output, wall-clock time of
    the first result)."""
    out = call()
    first = time.time()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = call()
        times.append((time.perf_counter() - t0) * 1000)
    return times, out, first


def edgetf_worker(args: argparse.Namespace) -> None:
    """edgetf q8: encoder session + ``Seq2SeqDecoder`` beam search, as the text2text pipelines run them."""
    import numpy as np

    import edgetf
    from edgetf.generation import Seq2SeqDecoder, generate
    from edgetf.session import SessionOptions

    job = json.loads(Path(args.job).read_text())
    opts = SessionOptions(intra_op_threads=args.threads, inter_op_threads=1, allow_spinning=not args.no_spin)
    pipe = edgetf.pipeline(job["task"], args.bundle, dtype="q8", session_options=opts, verify="none")
    ids = np.array([job["input_ids"]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    settings = {k: job[k] for k in ("no_repeat_ngram_size", "length_penalty")}
    forced = {"num_beams": job["beams"], "max_new_tokens": job["tokens"], "min_new_tokens": job["tokens"]}
    gen = pipe.resolve({**settings, **forced})
    encoder, decoder = pipe.session("encoder_model"), pipe.session("decoder_model_merged")
    start_ids = np.full((1, 1), gen.decoder_start_token_id, dtype=np.int64)

    encoder_ms: list[float] = []
    model_ms: list[float] = []

    class TimedSteps:
        """The decoder with the time of its ONNX calls (prefill, step) added to ``model_ms[-1]``."""

        def __init__(self, inner: Seq2SeqDecoder) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def timed(self, fn: Any, *a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*a, **k)
            model_ms[-1] += (time.perf_counter() - t0) * 1000
            return out

        def prefill(self, *a: Any, **k: Any) -> Any:
            return self.timed(self.inner.prefill, *a, **k)

        def step(self, *a: Any, **k: Any) -> Any:
            return self.timed(self.inner.step, *a, **k)

    def call() -> list[int]:
        t0 = time.perf_counter()
        hidden = encoder.run(feeds)["last_hidden_state"]
        encoder_ms.append((time.perf_counter() - t0) * 1000)
        model_ms.append(0.0)
        dec = TimedSteps(Seq2SeqDecoder(decoder, hidden, feeds["attention_mask"], pipe.bundle.config))
        return generate(dec, start_ids, gen, max_positions=pipe.max_positions).sequences[0].tolist()[1:]

    times, out, first = timed_calls(call, args.runs)
    payload = {"median_ms": statistics.median(times), "runs_ms": times, "new_tokens": len(out), "sequence": out}
    # the timed calls' parts: the encoder, the decoder's ONNX calls, the rest (beam search in numpy)
    payload["encoder_ms"] = statistics.median(encoder_ms[1:])
    payload["decoder_onnx_ms"] = statistics.median(model_ms[1:])
    loop = [t - e - m for t, e, m in zip(times, encoder_ms[1:], model_ms[1:], strict=True)]
    payload["loop_ms"] = statistics.median(loop)
    worker_result({**payload, "engine": f"edgetf {edgetf.__version__}"}, first)


def transformers_worker(args: argparse.Namespace) -> None:
    """transformers ``generate`` (PyTorch fp32) on the random-weight checkpoint the bundle was exported from."""
    import torch
    import transformers

    job = json.loads(Path(args.job).read_text())
    torch.set_num_threads(args.threads)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(args.checkpoint).eval()
    ids = torch.tensor([job["input_ids"]], dtype=torch.long)
    options = dict(
        num_beams=job["beams"],
        min_new_tokens=job["tokens"],
        max_new_tokens=job["tokens"],
        no_repeat_ngram_size=job["no_repeat_ngram_size"],
        length_penalty=job["length_penalty"],
        do_sample=False,
    )

    def call() -> list[int]:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
        return out[0, 1:].tolist()  # without the decoder start token

    times, out, first = timed_calls(call, args.runs)
    payload = {"median_ms": statistics.median(times), "runs_ms": times, "new_tokens": len(out), "sequence": out}
    worker_result({**payload, "engine": f"transformers {transformers.__version__} torch {torch.__version__}"}, first)


def time_ratios(rows: list[dict[str, Any]], subject: str, ratios: dict[str, str]) -> None:
    """On the row of contender ``subject``: ``key`` = its time / contender ``other``'s, for each ``key: other``
    in ``ratios``: whole-call medians where both emitted the same number of tokens, else milliseconds per
    emitted token (``ratio_basis`` names which); left out where either has no time."""
    by_name = {r["contender"]: r for r in rows}
    mine = by_name.get(subject, {})
    for key, other in ratios.items():
        theirs = by_name.get(other, {})
        if "median_ms" not in mine or "median_ms" not in theirs:
            continue
        if mine["new_tokens"] == theirs["new_tokens"]:
            mine[key] = mine["median_ms"] / theirs["median_ms"]
            basis = "call"
        else:
            mine[key] = (mine["median_ms"] / mine["new_tokens"]) / (theirs["median_ms"] / theirs["new_tokens"])
            basis = "per token"
        mine.setdefault("ratio_basis", {})[key] = basis


def spawner(name: str, common: list[str], env: dict[str, str]) -> Any:
    """A ``run_rounds`` spawner of this script's worker for contender ``name``."""
    return lambda: run_worker(Path(__file__), ["--worker", "--contender", name, *common], env=env)


def contenders(args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, Any]]:
    """Per model: the three contenders in alternating rounds, one process each; rows with the ratios."""
    from benchmarks.contenders import seq2seq_spec

    rows: list[dict[str, Any]] = []
    for model in args.models:
        spec = entry(args.quick, model)
        bundle, checkpoint = build_bundle(spec, CACHE)
        job = write_job(bundle, spec.task, args.input_tokens, args.beams, args.tokens, CACHE)
        common = ["--bundle", str(bundle), "--job", str(job), "--threads", str(args.threads)]
        common += ["--runs", str(args.runs), "--checkpoint", str(checkpoint)]
        common += ["--no-spin"] * args.no_spin
        specs = {
            EDGETF: spawner(EDGETF, common, env),
            CT2: lambda c=checkpoint, j=job: seq2seq_spec(c, j, args.threads, args.runs, CACHE, env),
            TORCH: spawner(TORCH, common, env),
        }
        specs = {name: specs[name] for name in args.engines}
        print(f"{spec.name}: {args.rounds} alternating rounds of {', '.join(specs)}", file=sys.stderr, flush=True)
        found = run_rounds(specs, args.rounds)
        model_rows = []
        for name, raw in found.items():
            row = {"contender": name, "model": spec.name}
            if "median_ms" in raw:
                row.update({k: raw[k] for k in ROW_KEYS if k in raw})
                row["ms_per_token"] = raw["median_ms"] / max(raw["new_tokens"], 1)
                row["first_tokens"] = raw["sequence"][:8]
            else:
                row["skipped"] = (raw.get("skipped") or raw.get("error", ""))[-800:]
                print(f"{name} skipped: {row['skipped']}", file=sys.stderr)
            model_rows.append(row)
        time_ratios(model_rows, EDGETF, {"vs_ctranslate2": CT2, "vs_transformers": TORCH})
        rows += model_rows
    return rows


def cache_variants(args: argparse.Namespace, env: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The BART bundle's decode loop with the cross-attention cache shared vs gathered, per dtype."""
    spec = entry(args.quick)
    bundle, _ = build_bundle(spec, CACHE)
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
    print(f"\n{spec.name}, {args.beams} beams, {args.threads} threads, median of {args.rounds} alternating rounds")
    print(table(rows, columns))
    return spec.name, rows


CONTENDER_COLUMNS = [
    ("model", "model", ""),
    ("contender", "contender", ""),
    ("new_tokens", "new tok", ""),
    ("median_ms", "ms/call", ".0f"),
    ("ms_per_token", "ms/token", ".1f"),
    ("encoder_ms", "encoder ms", ".0f"),
    ("loop_ms", "search loop ms", ".0f"),
    ("spread", "process spread", ".0%"),
    ("vs_ctranslate2", "× CTranslate2 int8", ".2f"),
    ("vs_transformers", "× transformers", ".2f"),
    ("peak_rss_mb", "RSS MB", ".0f"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny catalog distilbart and t5, 1 round")
    parser.add_argument("--parts", nargs="+", choices=("contenders", "cache"), default=["contenders", "cache"])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS), help="contenders' models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per run (default 48; quick 16)")
    parser.add_argument("--input-tokens", type=int, default=None, help="encoder input length (default 512; quick 200)")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=None, help="alternating timed rounds (default 3; quick 1)")
    parser.add_argument("--runs", type=int, default=None, help="contenders: timed calls per process (default 2)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "q8"], help="cache: the bundle dtypes")
    parser.add_argument("--engines", nargs="+", choices=(EDGETF, CT2, TORCH), default=[EDGETF, CT2, TORCH])
    parser.add_argument(
        "--no-spin",
        action="store_true",
        help="contenders: idle threads sleep (edgetf allow_spinning=False, OMP_WAIT_POLICY=PASSIVE for PyTorch's "
        "and CTranslate2's OpenMP): for a machine whose cores other processes share",
    )
    parser.add_argument("--json", default=None, help="write the JSON result here too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tokens = args.tokens or (16 if args.quick else 48)
    args.input_tokens = args.input_tokens or (200 if args.quick else 512)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.runs = args.runs or (1 if args.quick else 2)
    if args.worker:
        {EDGETF: edgetf_worker, TORCH: transformers_worker}.get(args.contender, worker)(args)
        return 0

    start = time.perf_counter()
    env = {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.no_spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    document: dict[str, Any] = {"beams": args.beams, "threads": args.threads, "rounds": args.rounds}
    document["spinning"] = not args.no_spin
    document["new_tokens"], document["input_tokens"] = args.tokens, args.input_tokens
    if "contenders" in args.parts:
        rows = contenders(args, env)
        print(
            f"\n{args.beams} beams, {args.input_tokens} input tokens, {args.tokens} forced new tokens, "
            f"{args.threads} threads; median over {args.rounds} alternating rounds of one process each "
            f"({args.runs} timed calls per process); spinning {'off' if args.no_spin else 'on'}"
        )
        print(table(rows, CONTENDER_COLUMNS))
        document["contenders"] = rows
    if "cache" in args.parts:
        document["model"], document["results"] = cache_variants(args, env)
    document.update({"cpu_count": os.cpu_count(), "load_average": os.getloadavg()})
    document["bench_s"] = time.perf_counter() - start
    text = json.dumps(document, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
