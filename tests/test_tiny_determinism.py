"""Tiny builds are deterministic: fresh processes learn byte-identical tokenizers and seed identical weights.

(The `tokenizers` WordPiece/Unigram trainers did not: their vocabulary followed per-process hash order.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import hashlib, sys
from export import catalog, tiny
for name in ("distilbert-squad", "t5-small", "roberta-squad"):
    tok = tiny.train_tokenizer(catalog.get(name).tiny["tokenizer"], max_length=128)
    print(name, hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest())
out = tiny.build(catalog.get("distilbert-sst2"), sys.argv[1])
for f in sorted(out.iterdir()):
    print(f.name, hashlib.sha256(f.read_bytes()).hexdigest())
"""


def _fresh_build(folder: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "true", "PYTHONHASHSEED": "random"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_two_fresh_processes_build_identical_tokenizers_and_checkpoints(tmp_path):
    first, second = _fresh_build(tmp_path / "a"), _fresh_build(tmp_path / "b")
    assert first == second
    names = [line.split()[0] for line in first.splitlines() if line.strip()]
    assert {"tokenizer.json", "model.safetensors", "config.json", "edgetf-random-weights.json"} <= set(names)


def test_learned_wordpiece_covers_the_corpus_without_unk():
    from tokenizers import normalizers, pre_tokenizers

    from export.tiny import corpus_lines, learn_subwords, word_counts

    words = word_counts(corpus_lines(), normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer())
    alphabet, merges = learn_subwords(words, 300, prefix="##")
    assert len(alphabet) + len(merges) <= 300
    vocab = set(alphabet) | {m for m, _ in merges}
    for word in list(words)[:50]:  # every character is in the alphabet, in its word-initial or ## form
        assert word[0] in vocab and all("##" + c in vocab for c in word[1:])
    counts = [n for _, n in merges]
    assert counts[0] >= counts[-1]  # the most frequent pair merges first
