"""PyInstaller hook for edgetf: the lazily imported pipeline modules, the native libraries, no torch.

edgetf/tasks.py imports each pipeline module by name (importlib), which PyInstaller cannot see: every
runtime module is declared here. Optional extras (a server, Ray, the OpenVINO engine, these hooks) are left
out; an app that uses one imports it itself, which PyInstaller follows. The OpenVINO runtime is never
followed from edgetf's own imports: its Python package reaches torch, TensorFlow and JAX through its
model-conversion frontends, so an app that wants device="openvino" frozen imports openvino itself and
brings the hooks that package needs.
"""

from pathlib import Path

from PyInstaller.utils.hooks import (
    collect_data_files,
    collect_dynamic_libs,
    collect_submodules,
    get_module_file_attribute,
)

OPTIONAL = ("edgetf._pyinstaller", "edgetf.serve", "edgetf.ray", "edgetf.openvino_engine")


def runtime_module(name: str) -> bool:
    return not any(name == prefix or name.startswith(prefix + ".") for prefix in OPTIONAL)


hiddenimports = collect_submodules("edgetf", filter=runtime_module)
hiddenimports += ["tokenizers", "soundfile", "soxr", "PIL.Image", "numpy"]
datas = collect_data_files("edgetf", excludes=["_pyinstaller", "**/__pycache__"])
# onnxruntime's provider libraries (the execution providers installed, nothing else; its Python extension
# is found by import analysis) and
# soundfile's bundled libsndfile: also collected by pyinstaller-hooks-contrib, repeated here so an old
# contrib release cannot leave them out.
binaries = collect_dynamic_libs("onnxruntime")
sndfile_data = Path(get_module_file_attribute("soundfile")).parent / "_soundfile_data"
binaries += [(str(lib), "_soundfile_data") for lib in sndfile_data.glob("libsndfile*")]
# The export layer's heavy dependencies never belong in a runtime app, even when installed here; nor does
# the optional OpenVINO runtime, whose package imports torch (see above).
excludedimports = ["torch", "transformers", "optimum", "onnx", "export", "accelerate", "scipy", "openvino"]
