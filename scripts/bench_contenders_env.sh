#!/usr/bin/env bash
# The contender engines for benchmarks/ (OpenVINO + NNCF, CTranslate2, faster-whisper) in a venv of
# their own, so they never touch the runtime's (or the dev venv's) dependencies. CI does not run this.
#   bash scripts/bench_contenders_env.sh [VENV]      (default: $EDGETF_BENCH_VENV or /tmp/edgetf-bench-venv)
# The dev venv's site-packages are appended to its path (torch for CTranslate2's converter),
# after the venv's own, so the contenders' pinned dependencies win.
set -euo pipefail
VENV="${1:-${EDGETF_BENCH_VENV:-/tmp/edgetf-bench-venv}}"
BASE_PY="${EDGETF_DEV_PYTHON:-python3}"
"$BASE_PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# transformers here too (CTranslate2's converter; it pins tokenizers and huggingface_hub for faster-whisper too)
"$VENV/bin/pip" install -q "openvino==2026.4.*" "nncf==3.4.*" "ctranslate2==4.8.*" "faster-whisper==1.2.*" onnx \
  "transformers==$("$BASE_PY" -c "import transformers; print(transformers.__version__)")"
DEV_SITE="$("$BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VENV_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$DEV_SITE" != "$VENV_SITE" ]; then echo "$DEV_SITE" > "$VENV_SITE/zz-edgetf-dev.pth"; fi
"$VENV/bin/python" -c "import openvino, nncf, ctranslate2, faster_whisper; print('contenders:', openvino.__version__, nncf.__version__, ctranslate2.__version__, faster_whisper.__version__)"
