"""The engines a user would pick instead of edgetf, run from the contender venv (never the runtime's).

``bash scripts/bench_contenders_env.sh`` makes that venv (OpenVINO + NNCF, CTranslate2,
faster-whisper); ``EDGETF_BENCH_PYTHON`` points at its interpreter (default
/tmp/edgetf-bench-venv/bin/python). Without it every contender here is skipped with the reason.

The parent side (``openvino_specs``) is imported by the family benchmarks; the worker side runs as

    <bench python> benchmarks/contenders.py openvino --onnx model.onnx --feeds feeds.npz --mode int8

and prints one RESULT line like every other contender. OpenVINO reads the SAME ONNX file as edgetf
(the bundle's fp32 ``model.onnx``), reshaped to the static feed shapes; ``int8`` is NNCF
``nncf.quantize`` (transformer preset, calibrated on the feeds) of that model, cached beside the
feeds so that later processes time inference only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import run_worker, timed, worker_result  # noqa: E402

HERE = Path(__file__).resolve()


def bench_python() -> tuple[str | None, str]:
    """(interpreter, '') of the contender venv, or (None, why it cannot be used)."""
    python = os.environ.get("EDGETF_BENCH_PYTHON", "/tmp/edgetf-bench-venv/bin/python")
    if not Path(python).is_file():
        return None, f"no contender venv at {python} (bash scripts/bench_contenders_env.sh; EDGETF_BENCH_PYTHON)"
    return python, ""


def save_feeds(feeds: dict[str, Any], folder: Path, tag: str) -> Path:
    """The feeds every contender gets, as an .npz in ``folder`` (named by content)."""
    import numpy as np

    digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in feeds.values())).hexdigest()[:10]
    path = folder / f"feeds-{tag}-{digest}.npz"
    if not path.is_file():
        np.savez(path, **feeds)
    return path


def openvino_specs(
    onnx_path: Path, feeds_path: Path, threads: int, runs: int, cache: Path, modes: tuple[str, ...] = ("fp32", "int8")
) -> dict[str, Callable[[], dict]]:
    """Spawners (for ``common.run_rounds``) of OpenVINO fp32 and NNCF int8 on ``onnx_path``; a spawner
    whose engine is missing returns ``{"skipped": reason}``."""
    python, why = bench_python()

    def spawner(mode: str) -> Callable[[], dict]:
        def spawn() -> dict:
            if python is None:
                return {"skipped": why, "error": why}
            args = ["openvino", "--onnx", str(onnx_path), "--feeds", str(feeds_path), "--mode", mode]
            args += ["--threads", str(threads), "--runs", str(runs), "--cache", str(cache)]
            return run_worker(HERE, args, python=python)

        return spawn

    return {f"openvino-{mode}": spawner(mode) for mode in modes}


def openvino_worker(onnx_path: Path, feeds_path: Path, mode: str, threads: int, runs: int, cache: Path) -> None:
    import numpy as np
    import openvino as ov

    feeds = dict(np.load(feeds_path))
    core = ov.Core()
    stat = onnx_path.stat()
    key = hashlib.sha256(f"{onnx_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{feeds_path.name}".encode())
    cached = cache / f"ov-{mode}-{key.hexdigest()[:12]}.xml"
    if cached.is_file():
        model = core.read_model(str(cached))
    else:
        model = core.read_model(str(onnx_path))
        names = {p.get_any_name() for p in model.inputs}
        model.reshape({name: list(feeds[name].shape) for name in names})
        if mode == "int8":
            import nncf

            items = [{n: feeds[n] for n in names}]
            model = nncf.quantize(
                model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items)
            )
        cache.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(cached), compress_to_fp16=False)
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    inputs = {p.get_any_name(): feeds[p.get_any_name()] for p in compiled.inputs}
    one = lambda: request.infer(inputs)  # noqa: E731
    one()
    first = time.time()
    worker_result({**timed(one, runs), "engine": f"openvino {ov.__version__}"}, first)


def whisper_spec(
    mode: str, checkpoint: Path, audio: Path, beams: int, max_new: int, threads: int, runs: int, cache: Path
) -> dict:
    """One process of CTranslate2 int8 (``mode="ctranslate2"``: ``models.Whisper.generate`` on the same
    log-mel features) or faster-whisper's ``transcribe()`` (``mode="faster-whisper"``) on the Whisper
    checkpoint converted with CTranslate2's converter (cached). Keys as bench_speech's workers."""
    python, why = bench_python()
    if python is None:
        return {"skipped": why, "error": why}
    args = ["whisper", "--mode", mode, "--checkpoint", str(checkpoint), "--audio", str(audio), "--cache", str(cache)]
    args += ["--beams", str(beams), "--max-new-tokens", str(max_new), "--threads", str(threads), "--runs", str(runs)]
    result = run_worker(HERE, args, python=python, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)})
    if "median_ms" in result:
        result["median_s"] = result["median_ms"] / 1000
        result["runs_s"] = [t / 1000 for t in result.pop("runs_ms")]
    return result


def converted_whisper(checkpoint: Path, cache: Path) -> Path:
    """The checkpoint as a CTranslate2 int8 model folder (with its tokenizer and preprocessor config)."""
    import ctranslate2

    stat = (checkpoint / "config.json").stat()
    out = cache / f"ct2-whisper-{checkpoint.name}-{stat.st_mtime_ns}"
    if not (out / "model.bin").is_file():
        files = [f for f in ("tokenizer.json", "preprocessor_config.json") if (checkpoint / f).is_file()]
        converter = ctranslate2.converters.TransformersConverter(str(checkpoint), copy_files=files)
        converter.convert(str(out), quantization="int8", force=True)
    return out


def whisper_worker(args: argparse.Namespace) -> None:
    import statistics

    import numpy as np

    audio = np.load(args.audio).astype(np.float32)
    folder = converted_whisper(args.checkpoint, args.cache)
    tokens = {"n": 0}
    t_load = time.perf_counter()
    if args.mode == "faster-whisper":
        import faster_whisper

        model = faster_whisper.WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=args.threads)
        eot = model.hf_tokenizer.token_to_id("<|endoftext|>")
        options = dict(
            suppress_tokens=[-1, eot],  # end-of-text never wins: every window decodes max_new_tokens
            beam_size=args.beams,
            language="en",
            task="transcribe",
            temperature=0.0,  # one decode per window, as edgetf and transformers do here (no fallback)
            without_timestamps=True,
            condition_on_previous_text=False,
            max_new_tokens=args.max_new_tokens,
            vad_filter=False,
            compression_ratio_threshold=None,
            log_prob_threshold=None,
            no_speech_threshold=None,
        )

        def call() -> str:
            segments, _ = model.transcribe(audio, **options)
            segments = list(segments)
            tokens["n"] = sum(len(s.tokens) for s in segments)
            return "".join(s.text for s in segments)

        engine = f"faster-whisper {faster_whisper.__version__}"
    else:
        import ctranslate2
        import transformers

        model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8", intra_threads=args.threads)
        tok = transformers.AutoTokenizer.from_pretrained(str(args.checkpoint))
        fe = transformers.AutoFeatureExtractor.from_pretrained(str(args.checkpoint))
        prompt = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"])
        eot = tok.convert_tokens_to_ids("<|endoftext|>")

        def call() -> str:
            mel = fe(audio, sampling_rate=16000, return_tensors="np")["input_features"]
            (out,) = model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)),
                [prompt],
                beam_size=args.beams,
                max_length=len(prompt) + args.max_new_tokens,
                suppress_tokens=[-1, eot],  # end-of-text never wins: forced length, like the other contenders
            )
            tokens["n"] = len(out.sequences_ids[0])
            return tok.decode(out.sequences_ids[0])

        engine = f"ctranslate2 {ctranslate2.__version__}"
    load_s = time.perf_counter() - t_load
    call()
    first = time.time()
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    payload = {"median_ms": statistics.median(times), "runs_ms": times, "tokens": tokens["n"], "load_s": load_s}
    worker_result({**payload, "engine": engine}, first)


def generation_spec(checkpoint: Path, prompt: int, tokens: int, repeats: int, threads: int, cache: Path) -> dict:
    """One process of CTranslate2 int8 greedy decoding of the GPT-2 checkpoint (converted, cached): the
    same random prompt as bench_generation, exactly ``tokens`` new tokens. Keys as bench_generation's
    workers (``seconds`` per run, ``tokens``, ``sequence``), or ``error``."""
    python, why = bench_python()
    if python is None:
        return {"skipped": why, "error": why}
    args = ["generation", "--checkpoint", str(checkpoint), "--cache", str(cache), "--threads", str(threads)]
    args += ["--prompt", str(prompt), "--max-new-tokens", str(tokens), "--runs", str(repeats)]
    return run_worker(HERE, args, python=python, env={"OMP_NUM_THREADS": str(threads)})


def generation_worker(args: argparse.Namespace) -> None:
    import json

    import ctranslate2
    import numpy as np

    vocab = json.loads((args.checkpoint / "config.json").read_text())["vocab_size"]
    # the random-weight checkpoint has no tokenizer: a stand-in names the ids (GPT-2's last is end-of-text)
    names = [f"t{i}" for i in range(vocab - 1)] + ["<|endoftext|>"]
    stat = (args.checkpoint / "config.json").stat()
    folder = args.cache / f"ct2-{args.checkpoint.parent.name}-{stat.st_mtime_ns}"
    if not (folder / "model.bin").is_file():
        source = args.cache / f"ct2-source-{stat.st_mtime_ns}"  # the checkpoint plus a stand-in GPT-2 tokenizer
        source.mkdir(parents=True, exist_ok=True)
        for f in args.checkpoint.iterdir():
            if not (source / f.name).exists():
                (source / f.name).symlink_to(f.resolve())
        (source / "vocab.json").write_text(json.dumps({n: i for i, n in enumerate(names)}))
        (source / "merges.txt").write_text("#version: 0.2\n")
        converter = ctranslate2.converters.TransformersConverter(str(source))
        converter.convert(str(folder), quantization="int8", force=True)
    ids = np.random.default_rng(0).integers(0, vocab - 1, size=(1, args.prompt), dtype=np.int64)[0].tolist()
    generator = ctranslate2.Generator(str(folder), device="cpu", compute_type="int8", intra_threads=args.threads)
    options = dict(
        max_length=args.max_new_tokens,
        min_length=args.max_new_tokens,
        sampling_topk=1,
        include_prompt_in_result=False,
    )

    def call() -> list[int]:
        (result,) = generator.generate_batch([[names[i] for i in ids]], **options)
        return result.sequences_ids[0]

    out = call()
    first = time.time()
    seconds = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - t0)
    payload = {"seconds": seconds, "tokens": len(out), "sequence": ids + out}
    worker_result({**payload, "engine": f"ctranslate2 {ctranslate2.__version__}"}, first)


def seq2seq_spec(
    checkpoint: Path, job: Path, threads: int, runs: int, cache: Path, env: dict[str, str] | None = None
) -> dict:
    """One process of CTranslate2 int8 beam search (``Translator.translate_batch``) on the encoder-decoder
    checkpoint (BART, T5; converted once, cached): the job file's input ids, beams and forced length
    (bench_seq2seq's ``write_job``). Keys as bench_seq2seq's workers (``median_ms``, ``runs_ms``,
    ``new_tokens``, ``sequence``), or ``error``/``skipped``; ``env`` adds to the worker's environment."""
    python, why = bench_python()
    if python is None:
        return {"skipped": why, "error": why}
    args = ["seq2seq", "--checkpoint", str(checkpoint), "--feeds", str(job), "--cache", str(cache)]
    args += ["--threads", str(threads), "--runs", str(runs)]
    base = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    return run_worker(HERE, args, python=python, env={**base, **(env or {})})


def padded_vocabulary(vocab: dict[str, int], size: int) -> list[str]:
    """Token names by id for an output layer of ``size`` rows: the tokenizer's names where it has the id,
    stand-ins (``<ct2-id-N>``) for the rows a small locally trained tokenizer lacks, ids past ``size``
    dropped. CTranslate2 needs one name per row; the stand-ins are never fed, only emitted."""
    names = [f"<ct2-id-{i}>" for i in range(size)]
    for token, index in vocab.items():
        if 0 <= index < size:
            names[index] = token
    return names


def converted_seq2seq(checkpoint: Path, cache: Path) -> Path:
    """The encoder-decoder checkpoint as a CTranslate2 int8 model folder; the tokenizer's vocabulary is
    padded with stand-in names to the model's vocab_size (the bench models keep the real output-layer
    size with a small tokenizer, which the converter would reject as a size mismatch)."""
    import json

    import ctranslate2

    size = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    stat = (checkpoint / "config.json").stat()
    out = cache / f"ct2-{checkpoint.name}-{stat.st_mtime_ns}"
    if (out / "model.bin").is_file():
        return out

    class Padded:
        def __init__(self, tokenizer: Any) -> None:
            self.tokenizer = tokenizer

        def __getattr__(self, name: str) -> Any:
            return getattr(self.tokenizer, name)

        def get_vocab(self) -> dict[str, int]:
            return {t: i for i, t in enumerate(padded_vocabulary(self.tokenizer.get_vocab(), size))}

        def convert_ids_to_tokens(self, index: int) -> str:
            return padded_vocabulary(self.tokenizer.get_vocab(), size)[index]

    class Converter(ctranslate2.converters.TransformersConverter):
        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            model = super().load_model(model_class, model_name_or_path, **kwargs)
            if model.config.model_type == "bart" and not hasattr(model.config, "normalize_before"):
                model.config.normalize_before = False  # BART is post-norm; newer BartConfigs drop the field
            return model

        def load_tokenizer(self, tokenizer_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            return Padded(super().load_tokenizer(tokenizer_class, model_name_or_path, **kwargs))

    Converter(str(checkpoint)).convert(str(out), quantization="int8", force=True)
    return out


def seq2seq_worker(args: argparse.Namespace) -> None:
    import json
    import statistics

    import ctranslate2

    job = json.loads(args.feeds.read_text())
    t_load = time.perf_counter()
    folder = converted_seq2seq(args.checkpoint, args.cache)
    convert_s = time.perf_counter() - t_load
    vocab = json.loads((folder / "shared_vocabulary.json").read_text())
    index = {t: i for i, t in enumerate(vocab)}
    translator = ctranslate2.Translator(
        str(folder), device="cpu", compute_type="int8", intra_threads=args.threads, inter_threads=1
    )
    source = [[vocab[i] for i in job["input_ids"]]]
    options = dict(
        beam_size=job["beams"],
        min_decoding_length=job["tokens"],  # end-of-sequence cannot win before: forced length
        max_decoding_length=job["tokens"],
        no_repeat_ngram_size=job["no_repeat_ngram_size"],
        length_penalty=job["length_penalty"],
    )

    def call() -> list[int]:
        (result,) = translator.translate_batch(source, **options)
        return [index[t] for t in result.hypotheses[0]]

    out = call()
    first = time.time()
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = call()
        times.append((time.perf_counter() - t0) * 1000)
    payload = {"median_ms": statistics.median(times), "runs_ms": times, "new_tokens": len(out), "sequence": out}
    payload["convert_s"] = convert_s
    worker_result({**payload, "engine": f"ctranslate2 {ctranslate2.__version__}"}, first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("engine", choices=["openvino", "whisper", "generation", "seq2seq"])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--feeds", type=Path, help="openvino: feeds .npz; seq2seq: the job .json")
    parser.add_argument("--mode", default="fp32", help="openvino: fp32 or int8; whisper: ctranslate2 or faster-whisper")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    if args.engine == "whisper":
        whisper_worker(args)
    elif args.engine == "generation":
        generation_worker(args)
    elif args.engine == "seq2seq":
        seq2seq_worker(args)
    else:
        openvino_worker(args.onnx, args.feeds, args.mode, args.threads, args.runs, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
