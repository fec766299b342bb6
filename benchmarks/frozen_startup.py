"""Frozen app vs the same app unfrozen: folder size and cold start to first result.

    python benchmarks/frozen_startup.py [MODELS_DIR] [--app dist/edgetf-app/edgetf-app] [--runs 5] [--json out.json]

Freezes examples/frozen/app.py with PyInstaller (examples/frozen/build.py; or takes --app), then for one
bundle per family (distilbert-sst2, gpt2, wav2vec2-ctc, vit-base under MODELS_DIR, e.g. from
``python -m export all --tiny``) times whole processes from start to exit (the app exits right after
printing its first result): the frozen executable from ``env -i`` versus ``python app.py``. The first run
of each is reported apart (disk cache cold for the frozen folder after the build), then the median of
``--runs`` more. The frozen folder's size counts every file under it (no bundles).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "frozen"))

from edgetf.vision.samples import shapes  # noqa: E402

FAMILIES = {
    "text": ("distilbert-sst2", "I love this film", {}),
    "generation": ("gpt2", "Once upon a time", {"do_sample": False, "max_new_tokens": 8}),
    "speech": ("wav2vec2-ctc", "audio", {}),
    "vision": ("vit-base", "image", {}),
}


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the unfrozen app imports this checkout's edgetf
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="?", default="models")
    parser.add_argument("--app", help="a frozen executable already built (default: build one now)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "frozen_startup.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgetf-frozen-bench-"))
    if args.app:
        exe = Path(args.app).resolve()
    else:
        import build

        start = time.perf_counter()
        exe = build.build(work / "dist")
        print(f"built {exe} in {time.perf_counter() - start:.0f} s")
    t = np.arange(16000) / 16000
    sf.write(work / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    shapes(320, 240).save(work / "shapes.png")
    items = {"audio": str(work / "tone.wav"), "image": str(work / "shapes.png")}
    size = folder_size(exe.parent)
    report = {"frozen_folder_bytes": size, "families": {}}
    print(f"frozen folder {exe.parent}: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)")
    print("| family | bundle | frozen first | unfrozen first | frozen median | unfrozen median |")
    print("|---|---|---|---|---|---|")
    for family, (name, item, options) in FAMILIES.items():
        bundle = Path(args.models).resolve() / name
        app_args = [str(bundle), items.get(item, item), "--options", json.dumps(options)]
        frozen = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={work}", str(exe), *app_args]
        plain = [sys.executable, str(ROOT / "examples" / "frozen" / "app.py"), *app_args]
        row = {}
        for label, cmd in (("frozen", frozen), ("unfrozen", plain)):
            first = timed(cmd, work)
            rest = [timed(cmd, work) for _ in range(args.runs)]
            row[label] = {"first_s": first, "median_s": statistics.median(rest), "runs_s": rest}
        report["families"][family] = row
        print(
            f"| {family} | {name} | {row['frozen']['first_s']:.2f} s | {row['unfrozen']['first_s']:.2f} s "
            f"| {row['frozen']['median_s']:.2f} s | {row['unfrozen']['median_s']:.2f} s |"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
