"""The runtime must import (every submodule) with torch, transformers and optimum unimportable."""

import subprocess
import sys
from pathlib import Path

BLOCKER = r"""
import importlib, importlib.abc, pkgutil, sys
BANNED = ("torch", "transformers", "optimum")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError(f"blocked heavy import: {name}")
        return None
sys.meta_path.insert(0, Block())
import edgetf
names = [m.name for m in pkgutil.walk_packages(edgetf.__path__, "edgetf.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_runtime_imports_without_torch_transformers_optimum():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", BLOCKER], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 8  # bundle, session, tasks, errors, text, pipelines ...


def test_blocker_really_blocks():
    code = BLOCKER.replace("import edgetf", "import transformers")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "blocked heavy import" in proc.stderr
