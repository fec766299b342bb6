"""sha256 of bundle files, remembered per machine while the file is unchanged (git's index stat check).

Hashing a 180 MB model takes ~0.2 s, a fifth of a cold start. A hash is reused only when the file's
size, mtime, ctime, inode and device are all exactly what they were when it was hashed; writing to a
file changes its ctime, which user space cannot set back, so a changed file is always re-hashed.
Hashes of files modified within the last few seconds are not remembered (coarse file-system clocks
could hide a later change in the same tick). The cache is a small JSON file in
``$EDGETF_CACHE_DIR`` (default ``$XDG_CACHE_HOME/edgetf`` or ``~/.cache/edgetf``); set
``EDGETF_CACHE_DIR=""`` to hash on every start. An unreadable or unwritable cache only means hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

CACHE_FILE = "verified-sha256.json"
MAX_ENTRIES = 512
RACY_SECONDS = 3.0
_lock = threading.Lock()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_path() -> Path | None:
    folder = os.environ.get("EDGETF_CACHE_DIR")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "edgetf")
    return Path(folder) / CACHE_FILE if folder else None


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _load(cache: Path) -> dict[str, dict]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(cache: Path, key: str, entry: dict) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        data = _load(cache)
        data.pop(key, None)
        data[key] = entry
        for old in list(data)[: max(0, len(data) - MAX_ENTRIES)]:
            del data[old]
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".verified-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache)  # atomic: concurrent processes never read half a file
    except OSError:
        pass


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, from the cache when the file's stat is unchanged since it was hashed."""
    cache = cache_path()
    if cache is None:
        return sha256_file(path)
    key = str(Path(path).resolve())
    before = os.stat(path)
    hit = _load(cache).get(key)
    if isinstance(hit, dict) and hit.get("stat") == _stamp(before) and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = sha256_file(path)
    after = os.stat(path)
    settled = time.time() - max(after.st_mtime, after.st_ctime) > RACY_SECONDS
    if _stamp(after) == _stamp(before) and settled:
        with _lock:
            _store(cache, key, {"stat": _stamp(after), "sha256": digest})
    return digest
