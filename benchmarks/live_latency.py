"""Live-mode latency (edgetf.pipelines.live_asr): how long after a word is spoken it is confirmed.

    python benchmarks/live_latency.py BUNDLE [BUNDLE ...]          # e.g. the tiny test bundles
    python benchmarks/live_latency.py --seconds 60 --block 0.5 --min-chunk 1.0 --json out.json BUNDLE
    python benchmarks/live_latency.py --whisper-options '{"num_beams": 1, "max_new_tokens": 64}' BUNDLE

A clip (``speech_like``, --seconds long) is fed block by block (--block seconds) to ``pipe.live``. For every
confirmed word it reports:

* audio delay: seconds of audio received when the word was confirmed, minus the word's end time;
* wall delay: on a simulated real-time clock (block k arrives when its audio has been spoken; an update
  starts when its block has arrived and the previous update is done, and takes its measured compute time),
  the time the word was confirmed minus the time the block holding its end arrived.

Also: the compute time of one update (median, p95, max) and the real-time factor of the whole live run
(compute / audio; above 1 the live mode falls behind). The "policy" row is a prefix-stable stand-in
model (it hears a fixed script of a word every 0.7 s, the words that ended inside its buffer; no compute):
what LocalAgreement-2 alone costs. Random-weight bundles say nonsense, and whether two transcriptions of
nonsense agree is luck, so for them only the compute figures carry over to a trained model of that size.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgetf  # noqa: E402
from edgetf.audio.samples import speech_like  # noqa: E402
from edgetf.pipelines.live_asr import LiveTranscriber  # noqa: E402

SR = 16000


class PrefixStable:
    """Hears a fixed script: the words that ended inside its buffer (the buffer's samples hold their time)."""

    is_whisper = False
    sampling_rate = SR

    def __init__(self, seconds: float):
        self.words = [(0.3 + 0.7 * i, 0.8 + 0.7 * i, f"w{i}") for i in range(int((seconds - 1) / 0.7))]

    def __call__(self, samples: np.ndarray, **_options: Any) -> dict[str, Any]:
        offset, seconds = (float(samples[0]) if len(samples) else 0.0), len(samples) / SR
        heard = [(s - offset, e - offset, t) for s, e, t in self.words if s >= offset - 1e-6 and e - offset <= seconds]
        return {"text": "", "chunks": [{"timestamp": (s, e), "text": t} for s, e, t in heard]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def measure(
    pipe: Any, audio: np.ndarray, block_s: float, min_chunk_s: float, name: str, options: dict[str, Any]
) -> dict[str, Any]:
    step = int(round(block_s * SR))
    blocks = [audio[i : i + step] for i in range(0, len(audio), step)]
    live = LiveTranscriber(pipe, min_chunk_s=min_chunk_s, options=options)
    finish = 0.0
    audio_delays, wall_delays, computes = [], [], []
    events = list(live.run(blocks))
    for event in events[:-1]:
        start = max(event.received, finish)
        finish = start + event.compute_s
        computes.append(event.compute_s)
        for word in event.confirmed:
            end = word["timestamp"][1]
            audio_delays.append(event.received - end)
            arrived = min(event.received, math.ceil(end / block_s - 1e-9) * block_s)
            wall_delays.append(finish - arrived)
    seconds = len(audio) / SR
    confirmed = sum(len(e.confirmed) for e in events)
    return {
        "model": name,
        "audio_s": seconds,
        "updates": len(events) - 1,
        "words_confirmed_live": len(audio_delays),
        "words_total": confirmed,
        "audio_delay_s": {k: round(f(audio_delays), 3) for k, f in _stats().items()},
        "wall_delay_s": {k: round(f(wall_delays), 3) for k, f in _stats().items()},
        "update_compute_s": {k: round(f(computes), 4) for k, f in _stats().items()},
        "rtf": round(sum(computes) / seconds, 4),
    }


def _stats() -> dict[str, Any]:
    return {
        "median": lambda v: statistics.median(v) if v else float("nan"),
        "p95": lambda v: pct(v, 0.95),
        "max": lambda v: max(v) if v else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="*", help="ASR bundle folders (Whisper or CTC)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block", type=float, default=0.5)
    parser.add_argument("--min-chunk", type=float, default=1.0)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--json")
    parser.add_argument("--whisper-options", type=json.loads, default={}, help="e.g. '{\"num_beams\": 1}'")
    args = parser.parse_args()
    rows = []
    time_axis = (np.arange(int(args.seconds * SR)) / SR).astype(np.float32)
    rows.append(
        measure(PrefixStable(args.seconds), time_axis, args.block, args.min_chunk, "policy (prefix-stable)", {})
    )
    audio = speech_like(args.seconds, SR, 5).astype(np.float32)
    for bundle in args.bundles:
        pipe = edgetf.pipeline("automatic-speech-recognition", bundle, dtype=args.dtype)
        options = args.whisper_options if pipe.is_whisper else {}
        name = Path(bundle).name + (f" {options}" if options else "")
        rows.append(measure(pipe, audio, args.block, args.min_chunk, name, options))
    head = f"{'model':26} {'updates':>7} {'words':>9} {'audio delay s (med/p95/max)':>28} "
    print(head + f"{'wall delay s (med/p95/max)':>27} {'update s (med/p95/max)':>26} {'RTF':>6}")
    for r in rows:
        a, w, u = r["audio_delay_s"], r["wall_delay_s"], r["update_compute_s"]
        print(
            f"{r['model']:26} {r['updates']:7d} {r['words_confirmed_live']:4d}/{r['words_total']:<4d} "
            f"{a['median']:>9.2f}/{a['p95']:.2f}/{a['max']:.2f}      {w['median']:>9.2f}/{w['p95']:.2f}/{w['max']:.2f}"
            f"      {u['median']:>7.3f}/{u['p95']:.3f}/{u['max']:.3f} {r['rtf']:6.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
