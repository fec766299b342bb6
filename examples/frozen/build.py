"""Freeze examples/frozen/app.py into a one-folder app with PyInstaller (the [freeze] extra).

    python examples/frozen/build.py [--out DIR]     ->  DIR/edgetf-app/edgetf-app  (the executable)

This is `pyinstaller --onedir app.py`: edgetf's hooks come in through its `pyinstaller40` entry point. When
that entry point is not registered (edgetf run from a checkout that is not pip-installed), the hooks
folder is passed with --additional-hooks-dir instead, so the build is the same either way.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def hooks_registered() -> bool:
    """True when PyInstaller finds edgetf's hooks on its own (the installed edgetf is this checkout's)."""
    import edgetf

    own = Path(edgetf.__file__).resolve().parent / "_pyinstaller" / "hooks"
    for ep in entry_points(group="pyinstaller40"):
        if ep.value.startswith("edgetf._pyinstaller"):
            return [Path(p).resolve() for p in ep.load()()] == [own]
    return False


def build(out: Path, name: str = "edgetf-app") -> Path:
    """Run PyInstaller; the path of the frozen executable."""
    work = Path(tempfile.mkdtemp(prefix="edgetf-freeze-"))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--log-level", "WARN", "--name", name]
    cmd += ["--distpath", str(out), "--workpath", str(work), "--specpath", str(work), "--paths", str(ROOT)]
    if not hooks_registered():
        cmd += ["--additional-hooks-dir", str(ROOT / "edgetf" / "_pyinstaller" / "hooks")]
    subprocess.run([*cmd, str(HERE / "app.py")], cwd=ROOT, check=True)
    return out / name / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dist", help="folder for the frozen app (default: dist)")
    print(build(Path(parser.parse_args().out).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
