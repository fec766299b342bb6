"""Speech speed: edgetf (fp32, q8) vs the transformers pipeline on the same audio, each in its own process.

    python benchmarks/bench_speech.py                 # Whisper-base and Wav2Vec2-base sizes (random weights)
    python benchmarks/bench_speech.py --quick         # the tiny catalog recipes, 10 s of audio: a smoke run
    python benchmarks/bench_speech.py --json out.json --threads 2

Reports, per model and contender: wall time of one pipeline call on the clip (median of --runs after a
warm-up), real-time factor (RTF = seconds of compute per second of audio), speed-up over transformers
fp32, feature-extraction time and its share of the call, peak RSS of the process (model load
included), and whether the text equals transformers' (same tokens). Whisper runs the ASR pipeline's
defaults (5 beams, language detection) with a fixed ``max_new_tokens``; random weights never emit EOS,
so every contender generates the same number of tokens. The machine may be shared: compare ratios.
Needs the export extra (torch, transformers, optimum) for the reference and to build the models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's edgetf and export, not an installed copy
from benchmarks.common import build_bundle  # noqa: E402

CONTENDERS = ("transformers-fp32", "edgetf-fp32", "edgetf-q8")
TASK = "automatic-speech-recognition"

WHISPER_BASE = {
    "model_type": "whisper",
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "num_mel_bins": 80,
}


# -- models (parent process) ------------------------------------------------------------------------------
def entries(quick: bool) -> dict[str, Any]:
    """Catalog-style entries: the catalog's tiny recipes (--quick) or base sizes with real vocabularies."""
    from export import catalog
    from export.catalog import Entry

    if quick:
        return {"whisper": catalog.get("whisper-tiny"), "wav2vec2": catalog.get("wav2vec2-ctc")}
    whisper = catalog.get("whisper-tiny")
    ctc = catalog.get("wav2vec2-ctc")
    return {
        "whisper": Entry(
            name="bench-whisper-base",
            task=TASK,
            source="openai/whisper-base",
            dtypes=("fp32", "q8"),
            tiny={
                "architecture": "WhisperForConditionalGeneration",
                "multilingual": True,
                "vocab_size": 1000,
                "text_vocab_size": 50257,  # real id layout and output-layer size (51865)
                "max_length": 448,
                "config": WHISPER_BASE,
            },
            export=dict(whisper.export),
            quantize=dict(whisper.quantize),
        ),
        "wav2vec2": Entry(
            name="bench-wav2vec2-base",
            task=TASK,
            source="facebook/wav2vec2-base-960h",
            dtypes=("fp32", "q8"),
            tiny={"architecture": "Wav2Vec2ForCTC", "config": {"model_type": "wav2vec2"}},  # base defaults
            export=dict(ctc.export),
            quantize=dict(ctc.quantize),
        ),
    }


def clip(seconds: float) -> Any:
    from export.tasks.speech import speech_like

    return speech_like(seconds, 16000, 3).astype("float32")


# -- workers (one process each) ---------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, since ru_maxrss survives exec() and would report the
    parent's peak when that was larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    audio = np.load(args.audio)
    options = json.loads(args.options)
    threads = args.threads
    t_load = time.perf_counter()
    if args.worker.startswith("transformers"):
        import torch
        import transformers

        torch.set_num_threads(threads)
        pipe = transformers.pipeline(TASK, model=args.checkpoint, device="cpu")
        fe = pipe.feature_extractor

        def features() -> Any:
            return fe(audio, sampling_rate=16000, return_tensors="pt")
    else:
        import edgetf
        from edgetf.session import SessionOptions

        dtype = args.worker.split("-", 1)[1]
        opts = SessionOptions(intra_op_threads=threads, inter_op_threads=1)
        pipe = edgetf.pipeline(TASK, args.bundle, dtype=dtype, session_options=opts, verify="none")

        def features() -> Any:
            return pipe.features(audio)

    load_s = time.perf_counter() - t_load
    out = pipe(audio.copy(), **options)  # warm-up (also opens lazy sessions)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = pipe(audio.copy(), **options)
        times.append(time.perf_counter() - t0)
    fe_times = []
    for _ in range(max(3, args.runs)):
        t0 = time.perf_counter()
        features()
        fe_times.append(time.perf_counter() - t0)
    tokens = None
    if not args.worker.startswith("transformers"):
        tokens = int(sum(len(t) for t in pipe.token_ids(audio, **options)))
    result = {
        "load_s": load_s,
        "median_s": statistics.median(times),
        "runs_s": times,
        "features_s": statistics.median(fe_times),
        "text": out["text"],
        "tokens": tokens,
        "peak_rss_mb": peak_rss_mb(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(name: str, model: str, bundle: Path, ckpt: Path, audio: Path, options: dict, args: Any) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--bundle",
        str(bundle),
        "--checkpoint",
        str(ckpt),
        "--audio",
        str(audio),
        "--options",
        json.dumps(options),
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"model": model, "contender": name, "error": (proc.stderr or proc.stdout)[-1500:]}
    return {"model": model, "contender": name, **json.loads(lines[-1][len("RESULT ") :])}


# -- report -----------------------------------------------------------------------------------------------
def merge_rounds(results: list[dict]) -> dict:
    """One row per contender: median over rounds of each round's median; peak RSS is the largest seen."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    row = dict(ok[0])
    row["median_s"] = statistics.median(r["median_s"] for r in ok)
    row["features_s"] = statistics.median(r["features_s"] for r in ok)
    row["runs_s"] = [t for r in ok for t in r["runs_s"]]
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    row["rounds"] = len(ok)
    return row


def summarize(rows: list[dict], seconds: float) -> None:
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["contender"]] = row
    for contenders in by_model.values():
        base = contenders.get("transformers-fp32", {})
        for row in contenders.values():
            if "error" in row:
                continue
            row["audio_s"] = seconds
            row["rtf"] = row["median_s"] / seconds
            row["features_share"] = row["features_s"] / row["median_s"]
            if "median_s" in base:
                row["speedup_vs_transformers_fp32"] = base["median_s"] / row["median_s"]
                row["text_equals_transformers"] = row["text"] == base["text"]


def table(rows: list[dict]) -> str:
    head = (
        f"{'model':22} {'contender':18} {'call s':>8} {'RTF':>7} {'x tf32':>7} {'feat ms':>8} "
        f"{'feat %':>7} {'RSS MB':>8} {'tokens':>7} {'same text':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:22} {r['contender']:18} ERROR {r['error'].splitlines()[-1][:80]}")
            continue
        lines.append(
            f"{r['model']:22} {r['contender']:18} {r['median_s']:8.3f} {r['rtf']:7.4f} "
            f"{r.get('speedup_vs_transformers_fp32', float('nan')):7.2f} {r['features_s'] * 1000:8.1f} "
            f"{r['features_share'] * 100:6.1f}% {r['peak_rss_mb']:8.0f} {str(r.get('tokens') or '-'):>7} "
            f"{str(r.get('text_equals_transformers', '-')):>9}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, 10 s of audio, one run")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every contender")
    parser.add_argument("--runs", type=int, default=None, help="timed calls per worker (default 2, quick 1)")
    parser.add_argument("--rounds", type=int, default=None, help="workers per contender (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 30, quick 10)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Whisper tokens (default 64, quick 16)")
    parser.add_argument("--only", choices=("whisper", "wav2vec2"), action="append")
    parser.add_argument("--models", default="/tmp/edgetf-bench-speech", help="where built models are cached")
    parser.add_argument("--contenders", nargs="*", default=list(CONTENDERS))
    # worker mode
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.runs = args.runs or (1 if args.quick else 2)
    args.rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    max_new = args.max_new_tokens or (16 if args.quick else 64)
    folder = Path(args.models) / ("quick" if args.quick else "base")
    folder.mkdir(parents=True, exist_ok=True)
    import numpy as np

    audio_path = folder / f"clip-{seconds:g}s.npy"
    np.save(audio_path, clip(seconds))
    rows = []
    for model, entry in entries(args.quick).items():
        if args.only and model not in args.only:
            continue
        bundle, ckpt = build_bundle(entry, folder)
        options = {"max_new_tokens": max_new} if model == "whisper" else {}
        rounds: dict[str, list[dict]] = {name: [] for name in args.contenders}
        for index in range(args.rounds):  # contenders interleaved, so load drift on a shared machine hits all
            for name in args.contenders:
                print(f"round {index + 1}/{args.rounds}: {model} / {name} ...", file=sys.stderr, flush=True)
                rounds[name].append(run_worker(name, entry.name, bundle, ckpt, audio_path, options, args))
        rows.extend(merge_rounds(results) for results in rounds.values())
    summarize(rows, seconds)
    print(table(rows))
    doc = {
        "benchmark": "speech",
        "quick": args.quick,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "audio_seconds": seconds,
        "whisper_max_new_tokens": max_new,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "results": [{k: v for k, v in r.items() if k != "text"} for r in rows],
    }
    text = json.dumps(doc, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
