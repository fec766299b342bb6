"""Deterministic sample signals for tests, benchmarks and the exporter's parity checks (numpy only).

The exporter imports these from here, so runtime tests and benchmarks never import ``export``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000


def parity_signals(seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic 16 kHz test signals: silence, a tone, noise, a speech-like chirp train, short and long."""
    rng = np.random.default_rng(seed)
    sr = SAMPLING_RATE

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    tone = 0.5 * np.sin(2 * np.pi * 440 * t(2.0))
    noise = rng.normal(0, 0.1, int(1.5 * sr))
    return {
        "silence": np.zeros(sr, np.float32),
        "tone": tone.astype(np.float32),
        "noise": noise.astype(np.float32),
        "speechlike": speech_like(3.0, sr, seed).astype(np.float32),
        "short": speech_like(0.3, sr, seed + 1).astype(np.float32),
    }


def speech_like(seconds: float, sr: int = SAMPLING_RATE, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts: a gliding harmonic source under formant-ish envelopes, with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.08, 0.3) * sr)
        seg_t = np.arange(length) / sr
        f0 = rng.uniform(90, 220) * (1 + 0.2 * seg_t / max(seg_t[-1], 1e-3))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = sum(
            np.sin(k * phase) / k * np.exp(-(((k * f0) - rng.uniform(300, 2500)) ** 2) / 2e6) for k in range(1, 12)
        )
        envelope = np.sin(np.pi * np.arange(length) / length) ** 2
        stop = min(n, pos + length)
        out[pos:stop] += (0.4 * voiced * envelope)[: stop - pos]
        pos = stop + int(rng.uniform(0.02, 0.2) * sr)
    out += rng.normal(0, 0.003, n)
    return out


def synthesized_speech(text: str, folder: Path) -> Path | None:
    """A WAV file of ``text`` spoken by espeak-ng (22.05 kHz mono), or None when espeak-ng is not installed."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    path = Path(folder) / f"espeak-{abs(hash(text)) % 10**8}.wav"
    subprocess.run([exe, "-w", str(path), text], check=True, timeout=60, capture_output=True)
    return path
