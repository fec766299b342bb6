"""What word timestamps cost: a Whisper merged decoder exported with and without the cross-attention
outputs (``cross_attentions.{layer}``), on a random-weight whisper-base-size checkpoint.

Measures (each contender in its own process, rounds alternating):
* file size of ``decoder_model_merged.onnx`` (+ ``_data``) with and without the outputs;
* the default decode path (prefill of a 4-token prompt + N greedy steps, outputs not requested) per graph;
* the alignment pass (one teacher-forced run reading the attention + DTW) for an N-token window.

    python benchmarks/bench_word_timestamps.py [--steps 64] [--rounds 5] [--out /tmp/bench-words] [--interleaved]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export(out: Path) -> None:
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    sys.path.insert(0, str(ROOT))
    from export.onnx_configs import custom_configs, whisper_cross_attentions

    ckpt = out / "ckpt"
    if not ckpt.is_dir():
        torch.manual_seed(0)
        config = transformers.WhisperConfig(  # whisper-base sizes
            d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
            encoder_ffn_dim=2048, decoder_ffn_dim=2048, vocab_size=51865,
        )  # fmt: skip
        transformers.WhisperForConditionalGeneration(config).eval().save_pretrained(ckpt)
    task = "automatic-speech-recognition-with-past"
    for name, with_attn in (("plain", False), ("attn", True)):
        target = out / name
        if (target / "decoder_model_merged.onnx").is_file():
            continue
        kwargs = {}
        if with_attn:
            cfg = whisper_cross_attentions(
                transformers.AutoConfig.from_pretrained(ckpt), "automatic-speech-recognition"
            )
            kwargs = {
                "custom_onnx_configs": custom_configs(cfg, "encoder-decoder"),
                "model_kwargs": {"output_attentions": True},
                "library_name": "transformers",
            }
        main_export(str(ckpt), output=str(target), task=task, device="cpu", do_validation=False, **kwargs)


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("decoder_model_merged.onnx*"))


def worker(folder: Path, steps: int, align: bool) -> float:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from edgetf.generation import Seq2SeqDecoder
    from edgetf.session import Session, SessionOptions
    from edgetf.whisper.alignment import AlignmentSettings, window_token_times

    config = json.loads((folder / "config.json").read_text())
    session = Session(folder / "decoder_model_merged.onnx", options=SessionOptions(intra_op_threads=1))
    hidden = np.random.default_rng(0).standard_normal((1, 1500, config["d_model"])).astype(np.float32)
    prompt = np.array([[50258, 50259, 50359, 50364]], dtype=np.int64)
    ids = np.random.default_rng(1).integers(0, 50000, steps)
    decoder = Seq2SeqDecoder(session, hidden, None, config)
    decoder.prefill(prompt)  # warm-up
    t0 = time.perf_counter()
    if align:
        settings = AlignmentSettings(((4, 2), (4, 3), (5, 1), (5, 4)), 7)
        window_token_times(decoder, np.concatenate([prompt[0], ids]), 4, settings, 3000)
    else:
        decoder.prefill(prompt)
        for token in ids:
            decoder.step(np.array([[token]], dtype=np.int64))
    return time.perf_counter() - t0


def interleaved(out: Path, steps: int, rounds: int) -> None:
    """Both graphs in one process, one decode step each in turn: load drift hits both alike."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from edgetf.generation import Seq2SeqDecoder
    from edgetf.session import Session, SessionOptions

    config = json.loads((out / "plain" / "config.json").read_text())
    hidden = np.random.default_rng(0).standard_normal((1, 1500, config["d_model"])).astype(np.float32)
    prompt = np.array([[50258, 50259, 50359, 50364]], dtype=np.int64)
    ids = np.random.default_rng(1).integers(0, 50000, steps)
    decoders = {}
    for name in ("plain", "attn"):
        session = Session(out / name / "decoder_model_merged.onnx", options=SessionOptions(intra_op_threads=1))
        decoders[name] = Seq2SeqDecoder(session, hidden, None, config)
    per_step: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(rounds):
        for decoder in decoders.values():
            decoder.prefill(prompt)
        for token in ids:
            for name, decoder in decoders.items():
                t0 = time.perf_counter()
                decoder.step(np.array([[token]], dtype=np.int64))
                per_step[name].append(time.perf_counter() - t0)
    for name, values in per_step.items():
        ms = np.asarray(values) * 1000
        print(f"{name:6s} per step: min {ms.min():.2f} ms, p25 {np.percentile(ms, 25):.2f}, median {np.median(ms):.2f}")
    ratio = np.asarray(per_step["attn"]) / np.asarray(per_step["plain"])
    print(f"attn/plain per step pair: median {np.median(ratio):.3f} (p25 {np.percentile(ratio, 25):.3f}, "
          f"p75 {np.percentile(ratio, 75):.3f}) over {len(ratio)} pairs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-words"))
    parser.add_argument("--worker", nargs=2)
    parser.add_argument("--interleaved", action="store_true", help="one process, steps alternating")
    args = parser.parse_args()
    if args.interleaved:
        export(args.out)
        interleaved(args.out, args.steps, args.rounds)
        return
    if args.worker:
        print(worker(args.out / args.worker[0], args.steps, args.worker[1] == "align"))
        return
    export(args.out)
    times: dict[str, list[float]] = {"plain": [], "attn": [], "align": []}
    for _ in range(args.rounds):
        for name in times:
            folder, mode = ("attn", "align") if name == "align" else (name, "decode")
            cmd = [
                sys.executable,
                __file__,
                "--out",
                str(args.out),
                "--steps",
                str(args.steps),
                "--worker",
                folder,
                mode,
            ]
            times[name].append(float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    plain, attn = size(args.out / "plain"), size(args.out / "attn")
    print(f"decoder_model_merged fp32: {plain / 1e6:.2f} MB without, {attn / 1e6:.2f} MB with the outputs")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"{name:6s} median {statistics.median(ms):8.1f} ms  min {min(ms):8.1f}  max {max(ms):8.1f}")
    ratios = [a / p for a, p in zip(times["attn"], times["plain"])]
    spread = f"min {min(ratios):.3f}, max {max(ratios):.3f}"
    print(f"decode with/without outputs, per round: median {statistics.median(ratios):.3f} ({spread})")
    align = statistics.median(times["align"]) / statistics.median(times["plain"])
    print(f"alignment pass / decode of {args.steps} steps: {align:.3f}")


if __name__ == "__main__":
    main()
