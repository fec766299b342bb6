"""Builds small random-weight checkpoints from catalog recipes, with tokenizers trained locally.

A recipe names the architecture class, config overrides, and optionally a tokenizer
(``kind`` = wordpiece | bpe | unigram, learned from the corpus shipped in export/data), a preprocessor
(a transformers processor class and its kwargs) and generation
settings. Families that need more register a ``build_tiny`` hook in export/tasks.

Everything is deterministic, so every machine builds the same bytes: weights come from
``torch.manual_seed(seed)``, and WordPiece / Unigram vocabularies are learned here by
:func:`learn_subwords` with ties broken by text (the `tokenizers` WordPiece and Unigram trainers walk
Rust hash maps whose order changes per process, so the vocabulary changed from run to run; its
byte-level BPE trainer starts from a sorted alphabet and is stable, so ``bpe`` still uses it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .catalog import CORPUS, Entry

SPECIALS = {
    "wordpiece": {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    },
    "roberta": {
        "bos_token": "<s>",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    },
    "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
    "t5": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
}


def corpus_lines(extra: list[str] | None = None) -> list[str]:
    lines = [x for x in CORPUS.read_text(encoding="utf-8").split("\n") if x.strip()]
    return lines + list(extra or [])


def word_counts(lines: list[str], normalizer: Any, pre_tokenizer: Any) -> dict[str, int]:
    """How often each pre-tokenized word occurs in ``lines`` (after ``normalizer``)."""
    counts: dict[str, int] = {}
    for line in lines:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    return counts


def learn_subwords(words: dict[str, int], vocab_size: int, prefix: str = "") -> tuple[list[str], list[tuple[str, int]]]:
    """Byte-pair merges learned deterministically: the most frequent adjacent pair first, ties broken by
    the pair's text (the `tokenizers` trainers break ties by hash-map order, which changes per process).

    Symbols after a word's first character carry ``prefix`` (WordPiece's ``##``). Returns the alphabet
    (most frequent first) and the merged tokens in merge order with their counts; together they hold at
    most ``vocab_size`` tokens.
    """
    ordered = sorted(words)
    counts = [words[w] for w in ordered]
    symbols = [[w[0]] + [prefix + c for c in w[1:]] for w in ordered]
    frequency: dict[str, int] = {}
    for syms, n in zip(symbols, counts):
        for sym in syms:
            frequency[sym] = frequency.get(sym, 0) + n
    alphabet = sorted(frequency, key=lambda sym: (-frequency[sym], sym))
    pairs: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}

    def count(i: int, sign: int) -> None:
        syms, n = symbols[i], counts[i] * sign
        for pair in zip(syms, syms[1:]):
            pairs[pair] = pairs.get(pair, 0) + n
            if sign > 0:
                where.setdefault(pair, set()).add(i)

    for i in range(len(symbols)):
        count(i, 1)
    known, merges = set(alphabet), []
    while len(known) < vocab_size:
        live = [(-n, pair) for pair, n in pairs.items() if n > 0]
        if not live:
            break
        best_count, (a, b) = min(live)
        merged = a + b[len(prefix) :] if prefix and b.startswith(prefix) else a + b
        if merged not in known:
            known.add(merged)
            merges.append((merged, -best_count))
        for i in sorted(where.pop((a, b), ())):
            count(i, -1)
            syms, out, j = symbols[i], [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            symbols[i] = out
            count(i, 1)
        pairs.pop((a, b), None)
    return alphabet, merges


def unigram_pieces(words: dict[str, int], vocab_size: int, specials: list[str]) -> list[tuple[str, float]]:
    """A Unigram vocabulary without EM training: the specials (score 0, as T5's), then the alphabet and
    the learned merges scored by the log of their relative frequency. Deterministic, and every character
    of the corpus is a piece, so no corpus text maps to ``<unk>``."""
    alphabet, merges = learn_subwords(words, vocab_size - len(specials))
    chars: dict[str, int] = {}
    for word, n in words.items():
        for ch in word:
            chars[ch] = chars.get(ch, 0) + n
    scored = [(ch, chars[ch]) for ch in alphabet] + merges
    total = float(sum(n for _, n in scored))
    return [(tok, 0.0) for tok in specials] + [(tok, math.log(n / total)) for tok, n in scored]


def train_tokenizer(spec: dict[str, Any], max_length: int | None = None) -> Any:
    """Train a tokenizer on the corpus and wrap it in the transformers fast class named by ``class``."""
    import transformers

    tok, wrap = learn_tokenizer(spec)
    cls = getattr(transformers, wrap.pop("class"))
    model_max_length = wrap.pop("model_max_length") or max_length
    return cls(tokenizer_object=tok, model_max_length=model_max_length, **wrap)


def learn_tokenizer(spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The `tokenizers` Tokenizer a tiny recipe's ``tokenizer`` spec learns from the corpus (no transformers
    import), and the keyword arguments of its transformers wrapper (``class``, ``model_max_length``, the
    special tokens and class options)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    spec = dict(spec)
    kind, cls_name = spec.pop("kind"), spec.pop("class")
    vocab_size = int(spec.pop("vocab_size", 1000))
    lowercase = bool(spec.pop("lowercase", False))
    model_max_length = spec.pop("model_max_length", None)
    lines = corpus_lines(spec.pop("extra_text", None))
    if kind == "wordpiece":
        specials = SPECIALS["wordpiece"]
        normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=True, clean_text=True)
        pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        words = word_counts(lines, normalizer, pre_tokenizer)
        vocab = list(specials.values())
        alphabet, merges = learn_subwords(words, vocab_size - len(vocab), prefix="##")
        vocab = list(dict.fromkeys(vocab + alphabet + [merged for merged, _ in merges]))
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=specials["unk_token"]))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        tok.decoder = decoders.WordPiece(prefix="##")
        kwargs: dict[str, Any] = {"do_lower_case": lowercase}
    elif kind == "bpe":
        style = spec.pop("style", "gpt2" if cls_name.startswith("GPT2") else "roberta")
        specials = SPECIALS[style]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        ordered = list(dict.fromkeys(specials.values()))
        tok.train_from_iterator(
            lines,
            trainers.BpeTrainer(
                vocab_size=vocab_size, special_tokens=ordered, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        if style == "roberta":
            tok.post_processor = processors.RobertaProcessing(
                sep=("</s>", tok.token_to_id("</s>")),
                cls=("<s>", tok.token_to_id("<s>")),
                trim_offsets=True,
                add_prefix_space=False,
            )
        else:
            tok.post_processor = processors.ByteLevel(trim_offsets=False)
        kwargs = {}
    elif kind == "unigram":
        specials = SPECIALS["t5"]
        normalizer = normalizers.Sequence(
            [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
        )
        pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        words = word_counts(lines, normalizer, pre_tokenizer)
        tok = Tokenizer(models.Unigram(unigram_pieces(words, vocab_size, list(specials.values())), unk_id=2))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
        )
        kwargs = {"extra_ids": 0}
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use wordpiece, bpe or unigram")
    if spec:
        raise ValueError(f"unknown tokenizer recipe keys {sorted(spec)}")
    return tok, {"class": cls_name, "model_max_length": model_max_length, **specials, **kwargs}


def build(entry: Entry, out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny checkpoint for ``entry`` into ``out_dir`` and return it."""
    from .tasks import task_export

    hook = task_export(entry.task).build_tiny
    built = hook(entry, out_dir, seed) if hook is not None else build_generic(entry.tiny, out_dir, seed=seed)
    mark_random(built)
    return built


def mark_random(checkpoint: Path, seed: int = 0) -> Path:
    """Mark ``checkpoint`` as random-weight: export then judges its quantized files on logit-level
    closeness (export/gates.py), never on argmax agreement, which near-ties make a coin toss."""
    import json

    from .gates import RANDOM_MARKER

    path = Path(checkpoint) / RANDOM_MARKER
    path.write_text(json.dumps({"random_weights": True, "seed": seed}) + "\n", encoding="utf-8")
    return path


def build_generic(recipe: dict[str, Any], out_dir: Path, *, seed: int = 0) -> Path:
    import torch
    import transformers

    if "architecture" not in recipe or "config" not in recipe:
        raise ValueError("a tiny recipe needs 'architecture' and 'config'")
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(recipe["config"])
    model_type = overrides.pop("model_type")
    max_len = overrides.get("max_position_embeddings") or overrides.get("n_positions")
    tokenizer = None
    if "tokenizer" in recipe:
        tokenizer = train_tokenizer(recipe["tokenizer"], max_length=max_len)
        overrides.setdefault("vocab_size", len(tokenizer))
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            token_id = getattr(tokenizer, name, None)
            if token_id is not None:
                overrides.setdefault(name, token_id)
    if "id2label" in overrides:
        overrides["id2label"] = {int(k): v for k, v in overrides["id2label"].items()}
        overrides["label2id"] = {v: k for k, v in overrides["id2label"].items()}
    config = transformers.AutoConfig.for_model(model_type, **overrides)
    model = getattr(transformers, recipe["architecture"])(config).eval()
    model.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    if "preprocessor" in recipe:
        spec = dict(recipe["preprocessor"])
        getattr(transformers, spec.pop("class"))(**spec).save_pretrained(out_dir)
    if "generation" in recipe:
        transformers.GenerationConfig(**recipe["generation"]).save_pretrained(out_dir)
    return out_dir
