"""Time saved by vad_filter=True on a 60-s clip: four ~5-s sentences spoken by espeak-ng (or, without it,
speech-like bursts) each after 10 s of near-silence.

Each contender (plain, vad) runs in its own process, alternating rounds; prints per-round seconds, the median
ratio vad/plain and its spread. Usage: python benchmarks/bench_vad.py BUNDLE [rounds] [max_new_tokens]
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import tempfile
import numpy as np
import edgetf
from edgetf.audio.io import load_audio
from edgetf.audio.samples import speech_like, synthesized_speech
SR = 16000
SENTENCES = (
    "Offline transcription is the most common reason people run these models on a laptop.",
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Voice activity detection skips the silence before the speech model runs.",
    "Timestamps stay in the time of the original audio after the silence is cut.",
)
rng = np.random.default_rng(0)
folder = tempfile.mkdtemp()
parts = []
for i, sentence in enumerate(SENTENCES):
    parts.append(rng.normal(0, 0.002, 10 * SR).astype(np.float32))
    path = synthesized_speech(sentence, folder)
    speech = load_audio(str(path), SR).samples if path else speech_like(5.0, SR, i).astype(np.float32)
    parts.append(speech[: 5 * SR])
audio = np.concatenate(parts)
audio = np.concatenate([audio, np.zeros(max(0, 60 * SR - audio.shape[0]), np.float32)])[: 60 * SR]
pipe = edgetf.pipeline("automatic-speech-recognition", sys.argv[1])
vad = sys.argv[2] == "vad"
opts = {"return_timestamps": True, "max_new_tokens": int(sys.argv[3])}
pipe(audio[: 2 * SR], vad_filter=vad, **opts)  # warm-up: sessions, VAD model
start = time.perf_counter()
out = pipe(audio, vad_filter=vad, **opts)
seconds = time.perf_counter() - start
kept = None
if vad:
    from edgetf.audio.vad import SileroVAD, VadOptions, detect_speech
    kept = sum(b - a for a, b in detect_speech(audio, SR, VadOptions(), SileroVAD())) / SR
print(json.dumps({"seconds": seconds, "kept_s": kept}))
"""


def main() -> None:
    bundle = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tokens = sys.argv[3] if len(sys.argv) > 3 else "20"
    times: dict[str, list[float]] = {"plain": [], "vad": []}
    kept = None
    for _ in range(rounds):
        for name in ("plain", "vad"):
            proc = subprocess.run([sys.executable, "-c", CHILD, bundle, name, tokens], capture_output=True, text=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            times[name].append(result["seconds"])
            kept = result["kept_s"] if name == "vad" else kept
    ratios = sorted(v / p for p, v in zip(times["plain"], times["vad"]))
    print(json.dumps({"seconds": times, "speech_kept_s": kept, "ratio_vad_over_plain": ratios}, indent=1))


if __name__ == "__main__":
    main()
