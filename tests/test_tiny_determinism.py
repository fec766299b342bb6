"""Tiny builds are deterministic: fresh processes learn byte-identical tokenizers and seed identical weights.

(The `tokenizers` WordPiece/Unigram trainers did not: their vocabulary followed per-process hash order.)
The tokenizers are trained in two fresh processes with random hash seeds (no torch or transformers there,
so they start in seconds); the seeded weights are built twice in this process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# one entry per tokenizer kind: wordpiece (distilbert-squad), unigram (t5-small), bpe (roberta-squad)
TOKENIZER_SCRIPT = """
import hashlib, sys
from export import catalog, tiny
for name in ("distilbert-squad", "t5-small", "roberta-squad"):
    tok, _ = tiny.learn_tokenizer(catalog.get(name).tiny["tokenizer"])
    print(name, hashlib.sha256(tok.to_str().encode()).hexdigest())
print("imported:", *sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


def _fresh_tokenizers() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "true", "PYTHONHASHSEED": "random"}
    done = subprocess.run(
        [sys.executable, "-c", TOKENIZER_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_two_fresh_processes_train_identical_tokenizers():
    first, second = _fresh_tokenizers(), _fresh_tokenizers()
    assert first == second
    lines = [line.split() for line in first.splitlines() if line.strip()]  # (the BPE trainer prints blanks)
    assert [line[0] for line in lines] == ["distilbert-squad", "t5-small", "roberta-squad", "imported:"]
    assert len({line[1] for line in lines[:3]}) == 3  # three different tokenizers, each reproduced
    assert lines[3] == ["imported:"]  # neither torch nor transformers: the processes start in seconds


def test_seeded_tiny_checkpoints_are_byte_identical(tmp_path):
    from export import catalog, tiny

    entry = catalog.get("distilbert-sst2")
    digests = []
    for folder in ("a", "b"):
        out = tiny.build(entry, tmp_path / folder)
        digests.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(out.iterdir())})
    assert digests[0] == digests[1]
    assert {"tokenizer.json", "model.safetensors", "config.json", "edgetf-random-weights.json"} <= set(digests[0])


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
