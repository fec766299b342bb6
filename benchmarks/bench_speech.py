"""Speech speed: edgetf (fp32, q8) vs transformers, optimum ORTModel and bare onnxruntime, each in its own process.

    python benchmarks/bench_speech.py                 # Whisper-base and Wav2Vec2-base sizes (random weights)
    python benchmarks/bench_speech.py --quick         # the tiny catalog recipes, 10 s of audio: a smoke run
    python benchmarks/bench_speech.py --json out.json --threads 2

Contenders: the transformers pipeline on the checkpoint (PyTorch fp32); optimum's ORTModel
(``ORTModelForCTC``, ``ORTModelForSpeechSeq2Seq`` on the encoder + merged decoder) on the bundle's own
ONNX files inside the transformers pipeline; ``edgetf.pipeline``; and, for Wav2Vec2 CTC only, bare
onnxruntime: one session with edgetf's settings run on ``input_values`` made beforehand, the floor for
edgetf (for Whisper a bare ``run`` is not a generation loop, so there is no such floor; the row says so).

Reports, per model and contender: wall time of one pipeline call on the clip (median and p95 of --runs
after a warm-up, over --rounds processes), real-time factor (RTF = seconds of compute per second of
audio), time relative to transformers, cold start (process spawn to the first result: imports, model
load, first call), model load time, peak RSS of the process (VmHWM, model load included), size on
disk of the files loaded, feature-extraction time and its share of the call, edgetf's overhead over
bare onnxruntime ((edgetf - bare) / edgetf, against the bare process and, interleaved in the edgetf
process, its own session's bare run), and whether the text equals transformers' (same tokens).
Whisper runs the ASR pipeline's defaults (5 beams, language detection) with a fixed ``max_new_tokens``;
random weights never emit EOS, so every contender generates the same number of tokens. The machine
may be shared: compare ratios. Needs the export extra (torch, transformers, optimum) for the reference
and to build the models.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's edgetf and export, not an installed copy

from benchmarks.common import build_bundle, dir_size_mb, p95, peak_rss_self_mb, table  # noqa: E402

CONTENDERS = (
    "transformers-fp32",
    "optimum-fp32",
    "edgetf-fp32",
    "bare-fp32",
    "optimum-q8",
    "edgetf-q8",
    "bare-q8",
)
TASK = "automatic-speech-recognition"
SUFFIX = {"fp32": "", "q8": "_quantized"}
NO_BARE_WHISPER = "no bare floor for Whisper: one session.run is not a generation loop"

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
        ),
        "wav2vec2": Entry(
            name="bench-wav2vec2-base",
            task=TASK,
            source="facebook/wav2vec2-base-960h",
            dtypes=("fp32", "q8"),
            tiny={"architecture": "Wav2Vec2ForCTC", "config": {"model_type": "wav2vec2"}},  # base defaults
        ),
    }


def clip(seconds: float) -> Any:
    from edgetf.audio.samples import speech_like

    return speech_like(seconds, 16000, 3).astype("float32")


# -- workers (one process each) ---------------------------------------------------------------------------
def onnx_files(bundle: Path, dtype: str) -> list[Path]:
    """The ONNX graphs a contender loads: the CTC model, or Whisper's encoder and merged decoder."""
    names = ("encoder_model", "decoder_model_merged") if is_whisper(bundle) else ("model",)
    return [bundle / "onnx" / f"{n}{SUFFIX[dtype]}.onnx" for n in names]


def is_whisper(bundle: Path) -> bool:
    return json.loads((bundle / "config.json").read_text()).get("model_type") == "whisper"


def optimum_view(bundle: Path, dtype: str, folder: Path) -> Path:
    """A folder optimum can load ``dtype``'s Whisper graphs from: the same files, hard-linked under optimum's
    standard names. ORTModelForSpeechSeq2Seq finds the merged decoder only by its standard name; given a
    ``decoder_file_name`` it also wants a ``decoder_with_past`` file, which bundles do not have."""
    if dtype == "fp32" or not is_whisper(bundle):
        return bundle
    view = folder / f".optimum-{bundle.name}-{dtype}"
    (view / "onnx").mkdir(parents=True, exist_ok=True)
    links = {view / f.name: f for f in bundle.iterdir() if f.is_file()}
    for graph in onnx_files(bundle, dtype):
        links[view / "onnx" / graph.name.replace(SUFFIX[dtype], "")] = graph
        data = graph.with_name(graph.name + "_data")  # external weights keep the name the graph refers to
        if data.is_file():
            links[view / "onnx" / data.name] = data
    for link, target in links.items():
        link.unlink(missing_ok=True)
        try:
            os.link(target, link)
        except OSError:
            link.symlink_to(target)
    return view


def session_options(threads: int) -> Any:
    """onnxruntime options exactly as edgetf builds them (intra-op threads given, inter-op 1)."""
    from edgetf.session import SessionOptions

    return SessionOptions(intra_op_threads=threads, inter_op_threads=1).to_ort()


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    audio = np.load(args.audio)
    options = json.loads(args.options)
    threads = args.threads
    kind, _, dtype = args.worker.partition("-")
    bundle = Path(args.bundle)
    features: Callable[[], Any] | None = None
    bare: Callable[[], Any] | None = None  # edgetf's own session on pre-made feeds (CTC), interleaved
    t_load = time.perf_counter()
    if kind in ("transformers", "optimum"):
        import torch
        import transformers

        torch.set_num_threads(threads)
        if kind == "transformers":
            pipe = transformers.pipeline(TASK, model=args.checkpoint, device="cpu")
        else:
            from optimum.onnxruntime import ORTModelForCTC, ORTModelForSpeechSeq2Seq

            so = session_options(threads)
            if is_whisper(bundle):  # a standard-name view of the bundle (see optimum_view)
                model = ORTModelForSpeechSeq2Seq.from_pretrained(bundle, subfolder="onnx", session_options=so)
            else:
                model = ORTModelForCTC.from_pretrained(
                    bundle, subfolder="onnx", file_name=f"model{SUFFIX[dtype]}.onnx", session_options=so
                )
                # optimum-onnx 0.1.0's ORTModelForCTC lacks the attribute transformers' ASR pipeline reads
                if not hasattr(model, "main_input_name"):
                    model.main_input_name = "input_values"
            pipe = transformers.pipeline(
                TASK,
                model=model,
                tokenizer=transformers.AutoTokenizer.from_pretrained(bundle),
                feature_extractor=transformers.AutoFeatureExtractor.from_pretrained(bundle),
            )
        fe = pipe.feature_extractor

        def features() -> Any:
            return fe(audio, sampling_rate=16000, return_tensors="pt")

        def call() -> Any:
            return pipe(audio.copy(), **options)
    elif kind == "edgetf":
        import edgetf
        from edgetf.session import SessionOptions

        opts = SessionOptions(intra_op_threads=threads, inter_op_threads=1)
        # default verify (sha256 on first use), as users run it
        pipe = edgetf.pipeline(TASK, bundle, dtype=dtype, session_options=opts)

        def features() -> Any:
            return pipe.features(audio)

        def call() -> Any:
            return pipe(audio.copy(), **options)

        if not is_whisper(bundle):
            sess = pipe.session()
            values = pipe.features(audio)[None]
            ready = {"input_values": values, "attention_mask": np.ones(values.shape, np.int64)}
            ready = {name: ready[name] for name in sess.inputs}

            def bare() -> Any:
                return sess.ort_session.run(["logits"], ready)
    else:  # bare onnxruntime: the CTC graph on input_values made beforehand by edgetf's feature code
        import onnxruntime as ort

        import edgetf

        prep = edgetf.pipeline(TASK, bundle, dtype=dtype, verify="none")  # features only: no session opened
        (path,) = onnx_files(bundle, dtype)
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        values = prep.features(audio)[None]
        feeds = {"input_values": values, "attention_mask": np.ones(values.shape, np.int64)}
        feeds = {i.name: feeds[i.name] for i in session.get_inputs()}

        def call() -> Any:
            return session.run(["logits"], feeds)

    load_s = time.perf_counter() - t_load
    out = call()  # warm-up (also opens lazy sessions)
    first_result_at = time.time()
    times, bare_times = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        if bare is not None:
            t0 = time.perf_counter()
            bare()
            bare_times.append(time.perf_counter() - t0)
    fe_times = []
    for _ in range(max(3, args.runs) if features else 0):
        t0 = time.perf_counter()
        features()
        fe_times.append(time.perf_counter() - t0)
    tokens = None
    if kind == "edgetf":
        tokens = int(sum(len(t) for t in pipe.token_ids(audio, **options)))
    result = {
        "load_s": load_s,
        "first_result_at": first_result_at,
        "median_s": statistics.median(times),
        "runs_s": times,
        "bare_in_process_runs_s": bare_times or None,
        "features_s": statistics.median(fe_times) if fe_times else None,
        "text": out["text"] if isinstance(out, dict) else None,
        "tokens": tokens,
        "peak_rss_mb": peak_rss_self_mb(),
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
    spawned = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"model": model, "contender": name, "error": (proc.stderr or proc.stdout)[-1500:]}
    result = json.loads(lines[-1][len("RESULT ") :])
    result["cold_start_s"] = result.pop("first_result_at") - spawned
    return {"model": model, "contender": name, **result}


def other_engines(
    model: str, bundle: Path, ckpt: Path, audio: Path, folder: Path, args: Any, max_new: int
) -> dict[str, Callable[[], dict]]:
    """Spawners of the engines from the contender venv (benchmarks/contenders.py): CTranslate2 int8 and
    faster-whisper for Whisper; OpenVINO fp32 / NNCF int8 on the bundle's fp32 file for the CTC model."""
    from benchmarks import contenders

    if model == "whisper":
        return {
            f"{mode}-int8": functools.partial(
                contenders.whisper_spec, mode, ckpt, audio, args.beams, max_new, args.threads, args.runs, folder
            )
            for mode in ("ctranslate2", "faster-whisper")
        }
    import numpy as np

    import edgetf

    prep = edgetf.pipeline(TASK, bundle, dtype="fp32", verify="none")  # features only: no session opened
    values = prep.features(np.load(audio))[None]
    feeds = contenders.save_feeds(
        {"input_values": values, "attention_mask": np.ones(values.shape, np.int64)}, folder, bundle.name
    )
    specs = contenders.openvino_specs(
        bundle / "onnx" / "model.onnx", feeds, args.threads, args.runs, folder / "openvino"
    )

    def in_seconds(spawn: Callable[[], dict]) -> Callable[[], dict]:
        def run() -> dict:
            result = spawn()
            if "median_ms" in result:
                result["median_s"] = result["median_ms"] / 1000
                result["runs_s"] = [result["median_s"]]
            return result

        return run

    return {name: in_seconds(spawn) for name, spawn in specs.items()}


# -- report -----------------------------------------------------------------------------------------------
def merge_rounds(results: list[dict]) -> dict:
    """One row per contender: median over rounds of each round's median (and cold start, load); p95 over all
    timed calls; peak RSS is the largest seen."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    row = dict(ok[0])
    medians = [r["median_s"] for r in ok if r.get("median_s")]
    row["process_medians_s"] = medians  # one process per round: max/min - 1 is the process spread
    row["spread"] = max(medians) / min(medians) - 1 if len(medians) > 1 else None
    for key in ("median_s", "features_s", "cold_start_s", "load_s"):
        values = [r[key] for r in ok if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    row["runs_s"] = [t for r in ok for t in r["runs_s"]]
    row["p95_s"] = p95(row["runs_s"])
    bare = [t for r in ok for t in r.get("bare_in_process_runs_s") or []]
    row["bare_in_process_runs_s"] = bare or None
    if bare:
        calls = statistics.median(row["runs_s"])
        row["overhead_in_process"] = (calls - statistics.median(bare)) / calls
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
            if "median_s" not in row:
                continue
            row["audio_s"] = seconds
            row["rtf"] = row["median_s"] / seconds
            if row.get("features_s") is not None:
                row["features_share"] = row["features_s"] / row["median_s"]
            if "median_s" in base:
                row["vs_transformers"] = row["median_s"] / base["median_s"]
                row["speedup_vs_transformers_fp32"] = base["median_s"] / row["median_s"]
                if row.get("text") is not None:
                    row["text_equals_transformers"] = row["text"] == base["text"]
            bare = contenders.get("bare-" + row["contender"].partition("-")[2], {})
            if row["contender"].startswith("edgetf") and "median_s" in bare:
                row["overhead_vs_bare"] = (row["median_s"] - bare["median_s"]) / row["median_s"]
        mine = contenders.get("edgetf-q8", {})
        for key, other in (
            ("vs_optimum_q8", "optimum-q8"),
            ("vs_openvino_int8", "openvino-int8"),
            ("vs_ctranslate2", "ctranslate2-int8"),
            ("vs_faster_whisper", "faster-whisper-int8"),
        ):
            theirs = contenders.get(other, {})
            if "median_s" in mine and "median_s" in theirs:
                mine[key] = mine["median_s"] / theirs["median_s"]


COLUMNS = [
    ("model", "model", ""),
    ("contender", "contender", ""),
    ("median_s", "median s", ".3f"),
    ("p95_s", "p95 s", ".3f"),
    ("rtf", "RTF", ".4f"),
    ("vs_transformers", "× transformers time", ".2f"),
    ("cold_start_s", "cold start s", ".2f"),
    ("load_s", "load s", ".2f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("size_mb", "on disk MB", ".1f"),
    ("overhead_vs_bare", "overhead vs bare", ".1%"),
    ("overhead_in_process", "overhead vs bare (in-process)", ".1%"),
    ("features_share", "features share", ".1%"),
    ("tokens", "tokens", ""),
    ("text_equals_transformers", "same text", ""),
    ("vs_openvino_int8", "× OpenVINO int8", ".2f"),
    ("vs_ctranslate2", "× CTranslate2", ".2f"),
    ("vs_faster_whisper", "× faster-whisper", ".2f"),
    ("spread", "process spread", ".0%"),
]


def notes(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if "error" in r:
            out.append(f"- {r['model']} / {r['contender']}: ERROR {r['error'].strip().splitlines()[-1][:200]}")
        elif r.get("note"):
            out.append(f"- {r['model']} / {r['contender']}: {r['note']}")
    return out


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
    parser.add_argument("--beams", type=int, default=5, help="Whisper beams for every contender (default 5)")
    parser.add_argument(
        "--no-contenders", action="store_true", help="skip OpenVINO / CTranslate2 / faster-whisper (contender venv)"
    )
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
    started = time.perf_counter()
    for model, entry in entries(args.quick).items():
        if args.only and model not in args.only:
            continue
        bundle, ckpt = build_bundle(entry, folder)
        options = (
            {"max_new_tokens": max_new, "generate_kwargs": {"num_beams": args.beams}} if model == "whisper" else {}
        )
        names = list(args.contenders)
        skipped = [n for n in names if n.startswith("bare") and model == "whisper"]
        names = [n for n in names if n not in skipped]
        where = {
            n: optimum_view(bundle, n.partition("-")[2], folder) if n.startswith("optimum") else bundle for n in names
        }
        engines = {} if args.no_contenders else other_engines(model, bundle, ckpt, audio_path, folder, args, max_new)
        rounds: dict[str, list[dict]] = {name: [] for name in [*names, *engines]}
        for index in range(args.rounds):  # contenders interleaved, so load drift on a shared machine hits all
            for name in rounds:
                if rounds[name] and "error" in rounds[name][0] and name in engines:
                    continue  # an engine that cannot run here is not retried
                print(f"round {index + 1}/{args.rounds}: {model} / {name} ...", file=sys.stderr, flush=True)
                if name in engines:
                    rounds[name].append({"model": entry.name, "contender": name, **engines[name]()})
                else:
                    rounds[name].append(run_worker(name, entry.name, where[name], ckpt, audio_path, options, args))
        merged = {name: merge_rounds(results) for name, results in rounds.items()}
        merged.update({n: {"model": entry.name, "contender": n, "note": NO_BARE_WHISPER} for n in skipped})
        for name in args.contenders:
            dtype = name.partition("-")[2]
            size = dir_size_mb(list(ckpt.iterdir())) if name.startswith("transformers") else None
            merged[name]["size_mb"] = size or dir_size_mb(onnx_files(bundle, dtype))
            rows.append(merged[name])
        for name in engines:
            merged[name].setdefault("note", merged[name].pop("skipped", None) or merged[name].get("engine"))
            rows.append(merged[name])
    summarize(rows, seconds)
    print(f"\nspeech, {seconds:g} s clip, {args.threads} threads, {args.rounds} round(s) x {args.runs} run(s)")
    print(table(rows, COLUMNS))
    print("\n".join(notes(rows)))
    print(f"({time.perf_counter() - started:.0f} s)")
    doc = {
        "benchmark": "speech",
        "quick": args.quick,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "audio_seconds": seconds,
        "whisper_max_new_tokens": max_new,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "seconds": time.perf_counter() - started,
        "results": [{k: v for k, v in r.items() if k != "text"} for r in rows],
    }
    text = json.dumps(doc, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
