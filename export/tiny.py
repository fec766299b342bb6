"""Builds small random-weight checkpoints from catalog recipes, with tokenizers trained locally.

A recipe names the architecture class, config overrides, and optionally a tokenizer
(``kind`` = wordpiece | bpe | unigram, trained with the `tokenizers` library on the corpus shipped
in export/data), a preprocessor (a transformers processor class and its kwargs) and generation
settings. Families that need more register a ``build_tiny`` hook in export/tasks.
"""

from __future__ import annotations

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


def train_tokenizer(spec: dict[str, Any], max_length: int | None = None) -> Any:
    """Train a tokenizer on the corpus and wrap it in the transformers fast class named by ``class``."""
    import transformers
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    spec = dict(spec)
    kind, cls_name = spec.pop("kind"), spec.pop("class")
    vocab_size = int(spec.pop("vocab_size", 1000))
    lowercase = bool(spec.pop("lowercase", False))
    model_max_length = spec.pop("model_max_length", max_length)
    lines = corpus_lines(spec.pop("extra_text", None))
    if kind == "wordpiece":
        specials = SPECIALS["wordpiece"]
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=True, clean_text=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(
            lines, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(specials.values()))
        )
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
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence(
            [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
        )
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.train_from_iterator(
            lines,
            trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>", special_tokens=list(specials.values())),
        )
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
        )
        kwargs = {"extra_ids": 0}
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use wordpiece, bpe or unigram")
    if spec:
        raise ValueError(f"unknown tokenizer recipe keys {sorted(spec)}")
    cls = getattr(transformers, cls_name)
    return cls(tokenizer_object=tok, model_max_length=model_max_length, **specials, **kwargs)


def build(entry: Entry, out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny checkpoint for ``entry`` into ``out_dir`` and return it."""
    from .tasks import task_export

    hook = task_export(entry.task).build_tiny
    if hook is not None:
        return hook(entry, out_dir, seed)
    return build_generic(entry.tiny, out_dir, seed=seed)


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
