"""A frozen app: edgetf's PyInstaller hooks, and a one-folder build of examples/frozen/app.py that gives the
unfrozen runtime's outputs on one bundle per task family, run from a clean environment."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgetf.tasks import TASKS
from edgetf.vision.samples import shapes

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "frozen" / "app.py"
HOOKS = ROOT / "edgetf" / "_pyinstaller" / "hooks"
HEAVY = ("torch", "transformers", "optimum")
# the unfrozen app imports this checkout's edgetf (its folder is on sys.path, not the repository root)
UNFROZEN_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
needs_pyinstaller = pytest.mark.skipif(
    importlib.util.find_spec("PyInstaller") is None, reason="PyInstaller is not installed (the [freeze] extra)"
)


def test_hooks_are_registered_through_the_pyinstaller40_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pyinstaller40"] == {"hook-dirs": "edgetf._pyinstaller:get_hook_dirs"}
    from edgetf._pyinstaller import get_hook_dirs

    assert [Path(p) for p in get_hook_dirs()] == [HOOKS]
    assert sorted(p.name for p in HOOKS.glob("hook-*.py")) == ["hook-edgetf.py", "hook-onnxruntime.py", "hook-tqdm.py"]


def run_hook(name: str) -> dict:
    namespace: dict = {"__name__": "hook"}
    exec(compile((HOOKS / name).read_text(), str(HOOKS / name), "exec"), namespace)
    return namespace


@needs_pyinstaller
def test_edgetf_hook_declares_the_lazily_imported_pipelines_and_excludes_the_export_stack():
    hook = run_hook("hook-edgetf.py")
    pipelines = {f"edgetf.pipelines.{spec.module}" for spec in TASKS.values()}
    assert pipelines <= set(hook["hiddenimports"])
    assert not [m for m in hook["hiddenimports"] if m.startswith("edgetf._pyinstaller")]
    assert set(HEAVY) <= set(hook["excludedimports"])
    # the OpenVINO runtime's package imports torch through its frontends: never followed from edgetf
    assert "openvino" in hook["excludedimports"] and "edgetf.openvino_engine" not in hook["hiddenimports"]
    libs = {Path(src).name for src, _ in hook["binaries"]}
    assert any(name.startswith("libsndfile") for name in libs), libs
    assert any(name.startswith("libonnxruntime_providers") for name in libs), libs


@needs_pyinstaller
def test_onnxruntime_hook_keeps_its_libraries_and_drops_its_torch_tooling():
    hook = run_hook("hook-onnxruntime.py")
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    providers = {p.name for p in capi.glob("*onnxruntime_providers*")}  # shared, cuda, tensorrt ... as installed
    assert providers and providers == {Path(src).name for src, _ in hook["binaries"] if "providers" in src}
    assert {"torch", "onnxruntime.transformers", "onnxruntime.quantization"} <= set(hook["excludedimports"])


# ---- the frozen build (about a minute of PyInstaller, once per session) ---------------------------------


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (the [freeze] extra)")
    out = tmp_path_factory.mktemp("frozen")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "frozen" / "build.py"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exe = Path(proc.stdout.strip().splitlines()[-1])
    assert exe.is_file() and os.access(exe, os.X_OK)
    return exe


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("samples")
    t = np.arange(16000) / 16000
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    shapes(96, 64).save(folder / "shapes.png")
    return {"audio": str(folder / "tone.wav"), "image": str(folder / "shapes.png")}


FAMILIES = {  # family: (catalog entry, input, call options)
    "text": ("distilbert-sst2", "I love this film", {}),
    "generation": ("gpt2", "Once upon a time", {"do_sample": False, "max_new_tokens": 8}),
    "speech": ("wav2vec2-ctc", "audio", {}),
    "vision": ("vit-base", "image", {"top_k": 3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_frozen_app_gives_the_unfrozen_outputs_from_a_clean_environment(frozen, samples, tiny, tmp_path, family):
    name, item, options = FAMILIES[family]
    args = [str(tiny.get(name).bundle), samples.get(item, item), "--options", json.dumps(options)]
    home = tmp_path / "home"
    home.mkdir()
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    got = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in clean.items()), str(frozen), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert got.returncode == 0, got.stderr[-3000:]
    want = subprocess.run(
        [sys.executable, str(APP), *args], cwd=ROOT, env=UNFROZEN_ENV, capture_output=True, text=True, timeout=300
    )
    assert want.returncode == 0, want.stderr[-3000:]
    frozen_out, plain_out = json.loads(got.stdout), json.loads(want.stdout)
    assert frozen_out == plain_out
    assert frozen_out["task"] == tiny.get(name).manifest["task"]


@pytest.mark.slow
def test_frozen_folder_has_the_runtime_libraries_and_none_of_the_export_stack(frozen):
    internal = frozen.parent / "_internal"
    top = {p.name.split("-")[0].split(".")[0] for p in internal.iterdir()}
    assert not top & set(HEAVY), sorted(top & set(HEAVY))
    assert {"onnxruntime", "tokenizers", "soxr", "PIL", "numpy", "_soundfile_data"} <= top
    assert list((internal / "_soundfile_data").glob("libsndfile*"))
    assert list((internal / "onnxruntime" / "capi").glob("onnxruntime_pybind11_state*"))
    size = sum(p.stat().st_size for p in frozen.parent.rglob("*") if p.is_file())
    assert size < 400e6, f"{size / 1e6:.0f} MB: something heavy was collected"  # torch alone is over 600 MB


@pytest.mark.slow
def test_frozen_app_runs_doctor_with_the_unfrozen_findings(frozen, tiny, tmp_path):
    bundle = str(tiny.get("distilbert-sst2").bundle)
    clean = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={tmp_path}"]
    got = subprocess.run([*clean, str(frozen), "doctor", bundle], cwd=tmp_path, capture_output=True, text=True)
    want = subprocess.run(
        [sys.executable, str(APP), "doctor", bundle], cwd=ROOT, env=UNFROZEN_ENV, capture_output=True, text=True
    )
    assert (got.returncode, want.returncode) == (0, 0), got.stdout + got.stderr
    assert got.stdout == want.stdout  # the frozen app finds onnxruntime, its providers and the verified bundle
    assert "files match edgetf.json" in got.stdout
