"""GPT-2 greedy generation speed: edgetf (fp32, q8) vs transformers PyTorch generate vs optimum's
ORTModelForCausalLM on the same ONNX file. Each contender runs in its own process.

edgetf contenders: ``edgetf-*`` run the step loop (``generate`` over ``CausalLM``) on the fused decoder graph
the export writes (export/decoder_graph.py, in ``bundle/onnx/``); ``pipeline-*`` run the public
``edgetf.pipeline("text-generation", bundle)`` (text in, text out) on the same files; ``*-optimum-graph``
run the step loop on optimum's traced graph with the same q8 recipe (what bundles held before).

    python benchmarks/bench_generation.py            # GPT-2 124M (GPT2Config() sizes, random weights)
    python benchmarks/bench_generation.py --quick    # a 2-layer model, few tokens: a smoke run
    python benchmarks/bench_generation.py --arch llama   # a Llama-style decoder of the same size (GQA, SwiGLU)
    python benchmarks/bench_generation.py --json out.json
    python benchmarks/bench_generation.py --tokens 64 --repeats 3 --rounds 3 --only edgetf-q8 edgetf-q8-nospin edgetf-q4

Prints a table and a JSON document: end-to-end tokens/s (prefill included), per-step decode time split
into model time (inside the ONNX step, feeds included) and loop overhead (processors, bookkeeping),
peak RSS, and ratios to transformers fp32. The machine may be shared: compare ratios, not absolutes.

Memory bandwidth: batch-1 decoding reads every weight once per token, so tokens/s x weight bytes per
token is bounded by the machine's memory bandwidth. The parent measures it before each round (a
STREAM-like read test over 1 GiB, benchmarks/common.py ``memory_bandwidth``, with --threads threads; the
best figure counts, since other load only lowers it) and each row reports its weight bytes per token
(the ONNX file's initializers minus Gather-only embedding tables; transformers reads the same weights as
model.onnx), the GB/s that implies at its end-to-end tokens/s, and that as a share of the measured
bandwidth; the share also counts the KV cache a step reads (74 kB per cached position here, at the run's
mean cached length). Weights smaller than the
last-level cache can partly stay there between tokens, so a share near or above 100% means cache, not
a faster memory. --rounds N interleaves the contenders N times (a shared machine's load drifts).

Opt-in contenders (--only): edgetf-*-iobinding (KV cache kept in onnxruntime values), edgetf-*-copycache
(the fused graph's KV cache copied from past to present every step instead of one buffer), edgetf-*-nospin
(SessionOptions(allow_spinning=False): worker threads sleep between the ~700 small ops of a step instead
of spinning as edgetf and onnxruntime do by default; about 1.3x slower on idle cores, faster when another
process shares them), edgetf-q4 (4-bit MatMulNBits, see prepare_q4).
Needs the export extra (torch, transformers, optimum) for the reference contenders and the export.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's edgetf and export, not an installed copy
from benchmarks.common import memory_bandwidth, onnx_weight_bytes  # noqa: E402

CONTENDERS = (
    "transformers-fp32",
    "optimum-fp32",
    "optimum-q8",
    "edgetf-fp32",
    "edgetf-q8",
    "pipeline-fp32",
    "pipeline-q8",
    "edgetf-fp32-optimum-graph",
    "edgetf-q8-optimum-graph",
)


@dataclass(frozen=True)
class Run:
    """How a contender runs: ``file`` is the ONNX file it runs (transformers: whose weights it holds);
    ``spinning``: edgetf's SessionOptions.allow_spinning (on by default, as in onnxruntime)."""

    runner: str  # transformers | optimum | edgetf (the step loop) | pipeline (edgetf.pipeline on bundle/)
    file: str
    io_binding: bool = False
    spinning: bool = True
    shared_buffer: bool | None = None  # CausalLM's one-buffer KV cache: None where the graph allows it


RUNS: dict[str, Run] = {
    "transformers-fp32": Run("transformers", "model.onnx"),
    "optimum-fp32": Run("optimum", "model.onnx"),
    "optimum-q8": Run("optimum", "model_quantized.onnx"),
    # what the export writes (the fused decoder graph, export/decoder_graph.py), in bundle/onnx/
    "edgetf-fp32": Run("edgetf", "bundle/onnx/model.onnx"),
    "edgetf-q8": Run("edgetf", "bundle/onnx/model_quantized.onnx"),
    "pipeline-fp32": Run("pipeline", "bundle/onnx/model.onnx"),
    "pipeline-q8": Run("pipeline", "bundle/onnx/model_quantized.onnx"),
    "edgetf-q8-iobinding": Run("edgetf", "bundle/onnx/model_quantized.onnx", io_binding=True),
    "edgetf-fp32-iobinding": Run("edgetf", "bundle/onnx/model.onnx", io_binding=True),
    "edgetf-q8-nospin": Run("edgetf", "bundle/onnx/model_quantized.onnx", spinning=False),
    # the fused graph with the KV cache copied past -> present every step (what edgetf did before the one buffer)
    "edgetf-q8-copycache": Run("edgetf", "bundle/onnx/model_quantized.onnx", shared_buffer=False),
    "edgetf-fp32-copycache": Run("edgetf", "bundle/onnx/model.onnx", shared_buffer=False),
    # optimum's traced graph (what bundles held before the fused graph), same q8 recipe
    "edgetf-fp32-optimum-graph": Run("edgetf", "model.onnx"),
    "edgetf-q8-optimum-graph": Run("edgetf", "model_quantized.onnx"),
    "edgetf-q4": Run("edgetf", "model_q4.onnx"),  # built on first use (prepare_q4)
    "edgetf-q4-nospin": Run("edgetf", "model_q4.onnx", spinning=False),
}


# -- model preparation (parent process) -------------------------------------------------------------------
def model_config(arch: str, quick: bool) -> Any:
    """The random-weight checkpoint's config: GPT-2 124M, or a Llama-style decoder of about the same size
    (12 layers, hidden 768, 12 query / 4 key-value heads, SwiGLU 2048, untied 32k vocabulary: 125M)."""
    import transformers

    if arch == "gpt2":
        return transformers.GPT2Config(n_layer=2, n_embd=256, n_head=4) if quick else transformers.GPT2Config()
    sizes = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12}
    if quick:
        sizes = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}
    kv_heads = sizes["num_attention_heads"] // 3 if not quick else 2
    return transformers.LlamaConfig(
        **sizes, num_key_value_heads=kv_heads, vocab_size=32000, max_position_embeddings=2048, eos_token_id=2
    )


def max_positions(config: dict[str, Any]) -> int:
    return int(config.get("n_positions") or config["max_position_embeddings"])


def prepare(folder: Path, quick: bool, arch: str = "gpt2") -> Path:
    """Random-weight decoder exported with optimum (fp32) plus edgetf's q8 recipe; cached in ``folder``."""
    marker = folder / "ready"
    if marker.is_file():
        if not (folder / "bundle" / "tokenizer_config.json").is_file():  # written last: the bundle is whole
            prepare_bundle(folder, json.loads((folder / "config.json").read_text()))
        return folder
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    from export.quantize import make_dtype

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = model_config(arch, quick)
    ckpt = folder / "checkpoint"
    transformers.AutoModelForCausalLM.from_config(config).eval().save_pretrained(ckpt)
    main_export(str(ckpt), output=str(folder), task="text-generation-with-past", do_validation=False, device="cpu")
    make_dtype(
        folder / "model.onnx",
        folder / "model_quantized.onnx",
        "q8",
        target=None,
        level="all",
        quant={"untie_lm_head": True},
        default_ops=("MatMul",),
    )
    prepare_bundle(folder, config.to_dict())
    marker.write_text("ok")
    return folder


def prepare_bundle(folder: Path, config: dict[str, Any]) -> None:
    """``folder/bundle``: what ``python -m export`` writes for this checkpoint (the fused decoder graph, fp32
    and the same q8 recipe) plus a word-level tokenizer whose token ``t{i}`` is id i, so that the public
    pipeline reads the same prompt ids as the other contenders and every id decodes."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from export.decoder_graph import write_fused_decoder
    from export.quantize import make_dtype

    bundle = folder / "bundle"
    (bundle / "onnx").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        (bundle / name).write_text((folder / name).read_text())
    reason = write_fused_decoder(folder / "checkpoint", config, bundle / "onnx" / "model.onnx")
    if reason:  # what the export keeps: optimum's graph
        print(f"no fused decoder graph ({reason}): the bundle holds optimum's graph", file=sys.stderr)
        for name in ("model.onnx", "model.onnx_data"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, bundle / "onnx" / name)
    make_dtype(
        bundle / "onnx" / "model.onnx",
        bundle / "onnx" / "model_quantized.onnx",
        "q8",
        target=None,
        level="all",
        quant={"untie_lm_head": True},
        default_ops=("MatMul",),
    )
    vocab = {f"t{i}": i for i in range(config["vocab_size"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(bundle / "tokenizer.json"))
    eos = f"t{config['eos_token_id']}"
    settings = {"model_max_length": max_positions(config), "eos_token": eos, "bos_token": eos, "unk_token": "t0"}
    (bundle / "tokenizer_config.json").write_text(json.dumps(settings))


def prepare_q4(folder: Path) -> None:
    """model_q4.onnx: export's q4 recipe (4-bit weight-only MatMulNBits, block 32, symmetric, int8
    compute; Gemms rewritten as MatMul first) after untying the LM head, as the catalog's untie_lm_head does."""
    target = folder / "model_q4.onnx"
    if target.is_file():
        return
    import tempfile

    from export.quantize import quantize_q4, untie_transposed_weights

    with tempfile.TemporaryDirectory(prefix="edgetf-bench-q4-") as tmp:
        untied = Path(tmp) / "untied.onnx"
        untie_transposed_weights(folder / "model.onnx", untied)
        quantize_q4(untied, target)


# -- contenders (one child process each) ----------------------------------------------------------------
def _prompt(vocab: int, length: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).integers(0, vocab - 1, size=(1, length), dtype=np.int64)


def run_transformers(folder: Path, args: argparse.Namespace, onnx_file: str | None = None) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    if onnx_file is None:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder / "checkpoint").eval()
    else:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForCausalLM

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        model = ORTModelForCausalLM.from_pretrained(
            folder, file_name=onnx_file, use_cache=True, session_options=so, provider="CPUExecutionProvider"
        )
    ids = torch.tensor(_prompt(model.config.vocab_size, args.prompt))
    kwargs = {
        "max_new_tokens": args.tokens,
        "min_new_tokens": args.tokens,
        "do_sample": False,
        "pad_token_id": 0,
        "attention_mask": torch.ones_like(ids),
    }
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            out = model.generate(ids, **kwargs)
            times.append(time.perf_counter() - start)
    assert out.shape[1] == args.prompt + args.tokens
    return {"seconds": times[1:], "tokens": args.tokens, "sequence": out[0].tolist()}


class _Timed:
    """Wraps a StepModel; accumulates the time spent inside prefill/step."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.prefill_s = 0.0
        self.step_s = 0.0
        self.steps = 0

    def prefill(self, input_ids: Any, mask: Any) -> Any:
        start = time.perf_counter()
        out = self.inner.prefill(input_ids, mask)
        self.prefill_s += time.perf_counter() - start
        return out

    def step(self, input_ids: Any, mask: Any) -> Any:
        start = time.perf_counter()
        out = self.inner.step(input_ids, mask)
        self.step_s += time.perf_counter() - start
        self.steps += 1
        return out

    def select(self, rows: Any) -> None:
        self.inner.select(rows)


def run_edgetf(folder: Path, args: argparse.Namespace, run: Run) -> dict[str, Any]:
    from edgetf.generation import CausalLM, GenerationConfig, generate
    from edgetf.session import Session, SessionOptions

    config = json.loads((folder / "config.json").read_text())
    options = SessionOptions(intra_op_threads=args.threads, allow_spinning=run.spinning)
    session = Session(folder / run.file, options=options)
    ids = _prompt(config["vocab_size"], args.prompt)
    gen = GenerationConfig.from_dict(json.loads((folder / "generation_config.json").read_text()))
    gen.update(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)
    times, model_s, prefill_s, steps = [], [], [], []
    for _ in range(args.repeats + 1):
        model = _Timed(CausalLM(session, config, io_binding=run.io_binding, shared_buffer=run.shared_buffer))
        start = time.perf_counter()
        out = generate(model, ids, gen, max_positions=max_positions(config))
        times.append(time.perf_counter() - start)
        model_s.append(model.step_s)
        prefill_s.append(model.prefill_s)
        steps.append(model.steps)
    return {
        "seconds": times[1:],
        "tokens": args.tokens,
        "prefill_seconds": prefill_s[1:],
        "step_model_seconds": model_s[1:],
        "steps": steps[1:],
        "sequence": out.sequences[0].tolist(),
    }


def run_pipeline(folder: Path, args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """The public API end to end: ``edgetf.pipeline("text-generation", bundle)``, text in, text out."""
    import edgetf
    from edgetf.session import SessionOptions

    config = json.loads((folder / "config.json").read_text())
    dtype = "q8" if run.file.endswith("_quantized.onnx") else "fp32"
    options = SessionOptions(intra_op_threads=args.threads, allow_spinning=run.spinning)
    pipe = edgetf.pipeline("text-generation", folder / "bundle", dtype=dtype, session_options=options)
    prompt = " ".join(f"t{i}" for i in _prompt(config["vocab_size"], args.prompt)[0])
    generation = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False}
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        out = pipe(prompt, **generation)  # text out: the decode to text is part of the pipeline's work
        times.append(time.perf_counter() - start)
    sequence = [int(token[1:]) for token in out[0]["generated_text"].split()]
    return {"seconds": times[1:], "tokens": args.tokens, "sequence": sequence}


def worker(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    if name not in RUNS:
        raise SystemExit(f"unknown contender {name!r}; known: {', '.join(RUNS)}")
    run = RUNS[name]
    if run.runner == "transformers":
        result = run_transformers(folder, args)
    elif run.runner == "optimum":
        result = run_transformers(folder, args, run.file)
    elif run.runner == "pipeline":
        result = run_pipeline(folder, args, run)
    else:
        result = run_edgetf(folder, args, run)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's peak, kept across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_contender(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """One contender in its own process; None (and its stderr printed) when it fails."""
    cmd = [sys.executable, __file__, "--worker", name, "--folder", str(folder)]
    cmd += ["--tokens", str(args.tokens), "--prompt", str(args.prompt), "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def merge_raw(before: dict[str, Any] | None, raw: dict[str, Any]) -> dict[str, Any]:
    """Pool the timed runs of several rounds (per-run lists concatenate; peak RSS is the largest)."""
    raw = {**raw, "process_seconds": [statistics.median(raw["seconds"])]}  # this process's median run
    if before is None:
        return raw
    merged = dict(raw)
    merged["process_seconds"] = before["process_seconds"] + raw["process_seconds"]
    for key in ("seconds", "prefill_seconds", "step_model_seconds", "steps"):
        if key in raw:
            merged[key] = before[key] + raw[key]
    merged["peak_rss_mb"] = max(before["peak_rss_mb"], raw["peak_rss_mb"])
    return merged


CT2 = "ctranslate2-int8"


def ctranslate2_contender(folder: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """CTranslate2 int8 greedy decoding of the same checkpoint, prompt and token count, in its own process
    from the contender venv (benchmarks/contenders.py); None (reason printed) where it cannot run. Its
    weight bytes per token are counted as the q8 file's (the same int8 matrices)."""
    from benchmarks.contenders import generation_spec

    raw = generation_spec(folder / "checkpoint", args.prompt, args.tokens, args.repeats, args.threads, folder)
    if "seconds" not in raw:
        print(f"{CT2} skipped: {raw.get('skipped') or raw.get('error', '')[-800:]}", file=sys.stderr)
        return None
    return raw


# -- summary ------------------------------------------------------------------------------------------------
def kv_bytes_per_token(config: dict[str, Any], prompt: int, tokens: int) -> int:
    """KV-cache bytes a decode step reads, averaged over the run: float32 keys and values of every layer at
    the mean cached length (prompt + half the new tokens)."""
    layers = config.get("n_layer") or config["num_hidden_layers"]
    heads = config.get("n_head") or config["num_attention_heads"]
    hidden = config.get("n_embd") or config["hidden_size"]
    per_position = 2 * layers * int(config.get("num_key_value_heads") or heads) * (hidden // heads) * 4
    return int(per_position * (prompt + tokens / 2))


def summarize(name: str, raw: dict[str, Any], weight_bytes: int, bandwidth_gbps: float, kv_bytes: int = 0) -> dict:
    """One table row; ``weight_bytes``: weights read per generated token, ``kv_bytes``: KV cache read per
    token; ``bandwidth_gbps``: the measured limit. The share of bandwidth counts both."""
    total = statistics.median(raw["seconds"])
    tokens_per_s = raw["tokens"] / total
    read_bytes = weight_bytes + kv_bytes
    row = {
        "contender": name,
        "tokens_per_s": tokens_per_s,
        "total_s": total,
        "peak_rss_mb": raw["peak_rss_mb"],
        "runs_s": raw["seconds"],
        # spread of the per-process medians (one process per round): max/min - 1
        "spread": max(raw["process_seconds"]) / min(raw["process_seconds"]) - 1
        if len(raw.get("process_seconds", ())) > 1
        else None,
        "weight_mb_per_token": weight_bytes / 1e6,
        "kv_mb_per_token": kv_bytes / 1e6,
        "weight_gbps": read_bytes * tokens_per_s / 1e9,
        "bandwidth_pct": 100.0 * read_bytes * tokens_per_s / 1e9 / bandwidth_gbps,
    }
    if "step_model_seconds" in raw:
        runs = range(len(raw["seconds"]))
        # medians over the runs, each figure on its own (an even run count has no single median run)
        prefill = statistics.median(raw["prefill_seconds"][i] for i in runs)
        model_step = statistics.median(raw["step_model_seconds"][i] / max(raw["steps"][i], 1) for i in runs)
        # everything outside the ONNX prefill/step calls, per generated token
        overhead = statistics.median(
            (raw["seconds"][i] - raw["prefill_seconds"][i] - raw["step_model_seconds"][i]) / raw["tokens"] for i in runs
        )
        row.update(
            {
                "prefill_ms": prefill * 1e3,
                "step_ms": (model_step + overhead) * 1e3,
                "step_model_ms": model_step * 1e3,
                "loop_overhead_ms": overhead * 1e3,
                "loop_overhead_pct": 100.0 * overhead / (model_step + overhead),
                # decode steps alone (prefill left out): the figure the bandwidth bound is about
                "decode_weight_gbps": read_bytes / (model_step + overhead) / 1e9,
                "decode_bandwidth_pct": 100.0 * read_bytes / (model_step + overhead) / 1e9 / bandwidth_gbps,
            }
        )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2-layer model, 16 tokens, 1 repeat")
    parser.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2", help="the decoder (default gpt2)")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per run (default 128; quick 16)")
    parser.add_argument("--prompt", type=int, default=32, help="prompt length in tokens")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=None, help="cache folder for the exported model")
    parser.add_argument("--only", nargs="+", choices=tuple(RUNS), default=None)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the contenders, interleaved (default 1)")
    parser.add_argument("--bandwidth-mb", type=int, default=1024, help="array size of the bandwidth test")
    parser.add_argument("--json", default=None, help="write the JSON result here too")
    parser.add_argument("--no-contenders", action="store_true", help="skip CTranslate2 (the contender venv)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tokens = args.tokens or (16 if args.quick else 128)
    args.repeats = args.repeats or (1 if args.quick else 3)

    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.folder), args)))
        return 0

    default_cache = Path(os.environ.get("TMPDIR", "/tmp")) / (f"edgetf-bench-{args.arch}" + ("-quick" * args.quick))
    folder = prepare(Path(args.models) if args.models else default_cache, args.quick, args.arch)
    if any(RUNS[name].file == "model_q4.onnx" for name in args.only or CONTENDERS):
        prepare_q4(folder)
    weights = {name: onnx_weight_bytes(folder / RUNS[name].file) for name in args.only or CONTENDERS}
    results: dict[str, dict[str, Any]] = {}
    measured: list[dict[str, float]] = []
    for round_index in range(args.rounds):
        # the bandwidth test runs once per round; a shared machine depresses it, so its best is the limit
        measured.append(memory_bandwidth(args.bandwidth_mb, threads=args.threads))
        m = measured[-1]
        print(
            f"round {round_index + 1}/{args.rounds}: memory bandwidth read {m['read_gbps']:.1f} GB/s "
            f"({args.threads} threads), {m['read_1t_gbps']:.1f} (1 thread), copy {m['copy_gbps']:.1f}",
            file=sys.stderr,
        )
        for name in args.only or CONTENDERS:
            raw = run_contender(name, folder, args)
            if raw is not None:
                results[name] = merge_raw(results.get(name), raw)
        if not args.no_contenders:
            raw = ctranslate2_contender(folder, args)
            if raw is not None:
                results[CT2] = merge_raw(results.get(CT2), raw)
                weights.setdefault(CT2, onnx_weight_bytes(folder / "model_quantized.onnx"))
    bandwidth = {
        "gbps": max(m["gbps"] for m in measured),
        "read_gbps": max(m["read_gbps"] for m in measured),
        "read_1t_gbps": max(m["read_1t_gbps"] for m in measured),
        "copy_gbps": max(m["copy_gbps"] for m in measured),
        "per_round": measured,
    }

    kv = kv_bytes_per_token(json.loads((folder / "config.json").read_text()), args.prompt, args.tokens)
    rows = [summarize(name, raw, weights[name]["weight_bytes"], bandwidth["gbps"], kv) for name, raw in results.items()]
    base = next((r["tokens_per_s"] for r in rows if r["contender"] == "transformers-fp32"), None)
    for row in rows:
        row["vs_transformers_fp32"] = row["tokens_per_s"] / base if base else None
    by_name = {r["contender"]: r for r in rows}
    for row in rows:
        row["model"] = f"{args.arch}-{'quick' if args.quick else '124M'}"
    mine = by_name.get("edgetf-q8")
    if mine:  # throughput ratios, like vs_transformers_fp32 (the suite inverts them to time ratios)
        for key, other in (("vs_ctranslate2", CT2), ("vs_optimum_q8", "optimum-q8")):
            if other in by_name:
                mine[key] = mine["tokens_per_s"] / by_name[other]["tokens_per_s"]
        if "pipeline-q8" in by_name:  # the same loop behind edgetf.pipeline("text-generation")
            mine["pipeline_bandwidth_pct"] = by_name["pipeline-q8"]["bandwidth_pct"]
    reference = results.get("transformers-fp32", {}).get("sequence")
    for row in rows:
        seq = results[row["contender"]]["sequence"]
        row["same_tokens_as_transformers"] = None if reference is None else seq == reference

    print(
        f"\n{args.arch} {'quick (2 layers)' if args.quick else '124M'}, random weights; prompt {args.prompt} tokens, "
        f"{args.tokens} greedy new tokens, {args.threads} threads, median of {args.repeats} x {args.rounds} rounds; "
        f"memory bandwidth {bandwidth['gbps']:.1f} GB/s (best read, {args.threads} threads, over the rounds)"
    )
    header = f"{'contender':26} {'tok/s':>8} {'vs torch':>9} {'step ms':>8} {'model ms':>9} {'loop ms':>8} "
    header += f"{'loop %':>7} {'MB/tok':>7} {'GB/s':>6} {'% bw':>6} {'RSS MB':>8}  same tokens"
    print(header)
    for r in rows:

        def fmt(key: str, spec: str, r: dict[str, Any] = r) -> str:
            value = r.get(key)
            return format(value, spec) if isinstance(value, (int, float)) else "-"

        print(
            f"{r['contender']:26} {fmt('tokens_per_s', '8.1f')} {fmt('vs_transformers_fp32', '8.2f')}x "
            f"{fmt('step_ms', '8.2f')} {fmt('step_model_ms', '9.2f')} {fmt('loop_overhead_ms', '8.3f')} "
            f"{fmt('loop_overhead_pct', '6.1f')}% {fmt('weight_mb_per_token', '7.1f')} {fmt('weight_gbps', '6.2f')} "
            f"{fmt('bandwidth_pct', '5.1f')}% {fmt('peak_rss_mb', '8.0f')}  {r['same_tokens_as_transformers']}"
        )
    document = {
        "model": f"{args.arch}-quick" if args.quick else f"{args.arch}-124M",
        "prompt_tokens": args.prompt,
        "new_tokens": args.tokens,
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "memory_bandwidth": bandwidth,
        "weights": {name: weights[name] for name in results},
        "results": rows,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
