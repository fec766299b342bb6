"""PyInstaller hooks for apps that import edgetf (registered through the ``pyinstaller40`` entry point).

``pyinstaller my_app.py`` then collects what the runtime needs (every edgetf module, onnxruntime's native
libraries, tokenizers, soundfile's libsndfile, soxr, Pillow) and none of torch, transformers or optimum.
The hook files live in ``hooks/``, a plain folder (not a package), so nothing imports them but PyInstaller.
"""

from __future__ import annotations

from pathlib import Path


def get_hook_dirs() -> list[str]:
    """The folders PyInstaller searches for ``hook-<module>.py`` files."""
    return [str(Path(__file__).resolve().parent / "hooks")]
