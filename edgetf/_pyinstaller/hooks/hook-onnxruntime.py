"""PyInstaller hook for onnxruntime as edgetf uses it: the inference runtime and nothing of its tooling.

onnxruntime/__init__.py imports its ``transformers`` tooling and torch inside functions (device info, CUDA
DLL preloading), which pulls torch, transformers and their dependencies (over 1 GB) into any frozen app
where they are installed. Those helpers guard the imports, so leaving them out is safe. An app that needs
``onnxruntime.quantization`` or ``onnxruntime.transformers`` imports them itself, which still collects them.
This hook replaces pyinstaller-hooks-contrib's (priority 0 over its -1000) and keeps what it does: the
shared libraries (libonnxruntime and the execution providers installed, nothing else).
"""

from PyInstaller.utils.hooks import collect_dynamic_libs

binaries = collect_dynamic_libs("onnxruntime")
excludedimports = [
    "torch",
    "onnx",
    "onnxruntime.transformers",
    "onnxruntime.quantization",
    "onnxruntime.tools",
    "onnxruntime.backend",
    "onnxruntime.datasets",
    "psutil",
    "cpuinfo",
    "py3nvml",
]
