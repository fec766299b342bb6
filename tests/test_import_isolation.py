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


# -- layering: imports point down only --------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent / "edgetf"
CORE = ("errors", "numeric", "batching", "jsonable", "hashcache", "session", "bundle", "families", "verify", "tasks")
CORE += ("openvino_engine",)  # the OpenVINO runtime adapter behind session.open_session
LIBRARY = ("text", "audio", "vision", "generation", "whisper")  # pre-processing, the generation and Whisper libraries
LIBRARY += ("transcripts", "progress")  # subtitle writers; progress and cancellation of long work
APPS = ("__main__", "batch", "doctor", "ray", "serve", "_pyinstaller")  # and the package facade, edgetf/__init__
RANK = {"core": 0, "library": 1, "pipelines": 2, "apps": 3}
FORBIDDEN = ("export", "torch", "transformers", "optimum")  # the runtime never imports the exporter


def layer(module: str) -> str:
    """The layer of a module name under edgetf ("edgetf" itself is the facade, with the apps)."""
    parts = module.split(".")
    if parts == ["edgetf"] or parts[1] in APPS:
        return "apps"
    if parts[1] in CORE:
        return "core"
    if parts[1] in LIBRARY:
        return "library"
    if parts[1] == "pipelines":
        return "pipelines"
    raise AssertionError(f"{module} belongs to no layer: add it to CORE, LIBRARY or APPS in this test")


def imported_modules(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names of everything ``source`` imports (function-level imports included)."""
    import ast

    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                path = ROOT.parent.joinpath(*sub.split("."))
                found.append(sub if path.with_suffix(".py").is_file() or path.is_dir() else target)
    return found


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer(module)
    bad = []
    for target in imported_modules(source, module, is_package):
        if target.split(".")[0] in FORBIDDEN:
            bad.append(f"{module} imports {target}")
        elif target.split(".")[0] == "edgetf" and RANK[layer(target)] > RANK[own]:
            bad.append(f"{module} ({own}) imports {target} ({layer(target)})")
    return bad


def test_layers_import_downward_only():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        bad += upward_imports(path.read_text(), module, is_package)
    assert bad == []


def test_layer_check_catches_upward_imports():
    assert upward_imports("from ..pipelines.base import Pipeline", "edgetf.vision.x") == [
        "edgetf.vision.x (library) imports edgetf.pipelines.base (pipelines)"
    ]
    assert upward_imports("from .. import pipeline", "edgetf.pipelines.base") == [
        "edgetf.pipelines.base (pipelines) imports edgetf (apps)"
    ]
    assert upward_imports("def f():\n    from .text import chat", "edgetf.session") == [
        "edgetf.session (core) imports edgetf.text.chat (library)"
    ]
    assert upward_imports("import export.tiny", "edgetf.generation.steps") == [
        "edgetf.generation.steps imports export.tiny"
    ]
    assert upward_imports("from ..numeric import softmax\nfrom .chat import Chat", "edgetf.text.x") == []
