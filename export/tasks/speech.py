"""Export knowledge for speech: Whisper and Wav2Vec2-CTC speech recognition, Wav2Vec2 audio classification.

Tiny recipes need more than the generic builder: Whisper needs a byte-level BPE tokenizer that still
holds every Whisper special token (<|startoftranscript|>, the language tokens, <|transcribe|>,
<|translate|>, <|notimestamps|>, <|0.00|> .. <|30.00|>), a feature extractor and a generation config
with the Whisper fields (lang_to_id, task_to_id, no_timestamps_token_id, suppress_tokens ...);
Wav2Vec2-CTC needs a character vocabulary. Parity checks make their own test signals.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgetf.audio.samples import SAMPLING_RATE, parity_signals

from ..catalog import Entry
from ..inputs import signals as builtin_signals
from . import CheckContext, TaskExport, register
from .common import QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict

# Character vocabulary of facebook/wav2vec2-base-960h (CTC blank = <pad>, word delimiter = |).
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
TIE = 1e-6  # scores this close are a tie: either label may come first


# ------------------------------------------------------------------------------------------ tiny builders
def whisper_tokenizer(
    multilingual: bool, vocab_size: int = 600, text_vocab_size: int | None = None, n_languages: int = 99
) -> Any:
    """A small byte-level BPE WhisperTokenizerFast with every Whisper special and timestamp token.

    n_languages: language tokens after <|startoftranscript|>: 99 in every Whisper checkpoint but
    large-v3, which adds <|yue|> (100), shifting every later special token by one.
    text_vocab_size: pad the BPE vocabulary with unreachable filler entries to this many ids, so that the
    special tokens sit where a real checkpoint has them (50257 for multilingual Whisper) and the output
    layer has the real size (used by the speed benchmark).
    """
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from edgetf.whisper.tokens import LANGUAGES

    from ..tiny import corpus_lines

    eot = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(
        corpus_lines(),
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    if text_vocab_size is not None:
        tok = _pad_bpe_vocab(tok, text_vocab_size)
    languages = list(LANGUAGES)[:n_languages]
    specials = [
        eot,
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in languages],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    fast = transformers.WhisperTokenizerFast(
        tokenizer_object=tok,
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
        additional_special_tokens=specials,
        model_max_length=1024,
        clean_up_tokenization_spaces=True,
    )
    fast.add_tokens(
        [transformers.AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(1501)]
    )
    return fast


def _pad_bpe_vocab(tok: Any, size: int) -> Any:
    """The BPE tokenizer with filler vocabulary entries (letters only, so byte-level decoding stays valid)."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    i = 0
    while len(vocab) < size:
        word, n = "", i
        while True:
            word = "abcdefghijklmnopqrstuvwxyz"[n % 26] + word
            n //= 26
            if n == 0:
                break
        filler = f"zq{word}"
        if filler not in vocab:
            vocab[filler] = len(vocab)
        i += 1
    return Tokenizer.from_str(json.dumps(data))


def _whisper_generation(tokenizer: Any, multilingual: bool, max_length: int, decoder_layers: int = 2) -> Any:
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    text_vocab = ids("<|endoftext|>")  # BPE tokens come first
    # suppress a handful of text tokens plus the non-speech specials, like the real configs
    suppress = sorted({1, 2, 7, 8, 9, 10, 14, 25, text_vocab // 3, text_vocab // 2})
    suppress += [
        ids(t) for t in ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>")
    ]
    fields: dict[str, Any] = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": ids("<|startoftranscript|>"),
        "begin_suppress_tokens": [ids("Ġ"), eot],
        "suppress_tokens": suppress,
        "no_timestamps_token_id": ids("<|notimestamps|>"),
        "prev_sot_token_id": ids("<|startofprev|>"),
        "max_initial_timestamp_index": 50,
        "max_length": max_length,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "alignment_heads": [[decoder_layers - 1, 0], [decoder_layers - 1, 1]],  # word timestamps: last layer
    }
    if multilingual:
        from edgetf.whisper.tokens import LANGUAGES

        vocab = tokenizer.get_vocab()  # only the languages this tokenizer has (99, or 100 as large-v3)
        fields["lang_to_id"] = {f"<|{c}|>": vocab[f"<|{c}|>"] for c in LANGUAGES if f"<|{c}|>" in vocab}
        fields["task_to_id"] = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
        fields["forced_decoder_ids"] = [[1, None], [2, ids("<|transcribe|>")]]
    else:
        fields["forced_decoder_ids"] = [[1, ids("<|notimestamps|>")]]
    return transformers.GenerationConfig(**fields)


def build_whisper(entry: Entry, out_dir: Path, seed: int) -> Path:
    import torch
    import transformers

    recipe = dict(entry.tiny)
    overrides = dict(recipe["config"])
    overrides.pop("model_type", None)
    multilingual = bool(recipe.get("multilingual", True))
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_vocab = recipe.get("text_vocab_size")
    tokenizer = whisper_tokenizer(
        multilingual,
        int(recipe.get("vocab_size", 600)),
        None if text_vocab is None else int(text_vocab),
        n_languages=int(recipe.get("languages", 99)),
    )
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        begin_suppress_tokens=None,
        suppress_tokens=None,
        **overrides,
    )
    model = getattr(transformers, recipe["architecture"])(config).eval()
    scale = float(recipe.get("cross_attention_scale", 1.0))
    if scale != 1.0:  # sharper cross-attention: the random decoder's text then depends on the audio
        with torch.no_grad():
            for layer in model.model.decoder.layers:
                layer.encoder_attn.q_proj.weight.mul_(scale)
                layer.encoder_attn.k_proj.weight.mul_(scale)
    max_length = int(recipe.get("max_length", 448))
    model.generation_config = _whisper_generation(tokenizer, multilingual, max_length, config.decoder_layers)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    return out_dir


def build_wav2vec2(entry: Entry, out_dir: Path, seed: int) -> Path:
    """A Wav2Vec2-style checkpoint (wav2vec2, hubert, ... by the recipe's config ``model_type``) with a
    Wav2Vec2FeatureExtractor (the recipe's ``feature_extractor`` table overrides its settings; by default it
    returns an attention mask exactly when ``feat_extract_norm="layer"``, as the real checkpoints do) and,
    for CTC heads, a character vocabulary."""
    import torch
    import transformers

    recipe = dict(entry.tiny)
    overrides = dict(recipe["config"])
    model_type = overrides.pop("model_type", "wav2vec2")
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "id2label" in overrides:
        overrides["id2label"] = {int(k): v for k, v in overrides["id2label"].items()}
        overrides["label2id"] = {v: k for k, v in overrides["id2label"].items()}
    ctc = recipe["architecture"].endswith("ForCTC")
    if ctc:
        overrides.update(vocab_size=len(CTC_VOCAB), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = transformers.AutoConfig.for_model(model_type, **overrides)
    model = getattr(transformers, recipe["architecture"])(config).eval()
    model.save_pretrained(out_dir)
    settings: dict[str, Any] = {
        "feature_size": 1,
        "sampling_rate": SAMPLING_RATE,
        "padding_value": 0.0,
        "do_normalize": True,
        "return_attention_mask": config.feat_extract_norm == "layer",
    }
    settings.update(recipe.get("feature_extractor", {}))
    transformers.Wav2Vec2FeatureExtractor(**settings).save_pretrained(out_dir)
    if ctc:
        with tempfile.TemporaryDirectory() as tmp:
            vocab = Path(tmp) / "vocab.json"
            vocab.write_text(json.dumps({c: i for i, c in enumerate(CTC_VOCAB)}))
            tokenizer = transformers.Wav2Vec2CTCTokenizer(
                str(vocab), word_delimiter_token="|", **{"do_lower_case": False, **recipe.get("tokenizer", {})}
            )
            tokenizer.save_pretrained(out_dir)
    return out_dir


def waveform_encoder(model_type: str | None) -> bool:
    """Whether ``model_type`` reads the raw waveform through a convolutional feature encoder
    (wav2vec2, hubert, wavlm, ...: its config has ``conv_stride``)."""
    import transformers

    if not model_type:
        return False
    try:
        return hasattr(transformers.AutoConfig.for_model(model_type), "conv_stride")
    except ValueError:
        return False


def build_speech(entry: Entry, out_dir: Path, seed: int) -> Path:
    arch = entry.tiny.get("architecture", "")
    if arch.startswith("Whisper"):
        return build_whisper(entry, out_dir, seed)
    if waveform_encoder(entry.tiny.get("config", {}).get("model_type")):
        return build_wav2vec2(entry, out_dir, seed)
    from ..tiny import build_generic

    return build_generic(entry.tiny, out_dir, seed=seed)


# ------------------------------------------------------------------------------------------ parity checks
@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the reference with few torch threads: on a busy machine torch's spinning threads slow it 20x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _is_whisper(ctx: CheckContext) -> bool:
    config = json.loads((ctx.bundle / "config.json").read_text())
    return bool(config.get("is_encoder_decoder"))


def check_speech_recognition(ctx: CheckContext) -> dict[str, Any]:
    """fp32: text identical to the reference on every signal, features within tolerance.
    Other dtypes: token agreement (CTC: argmax id per frame vs the reference model; Whisper: generated id
    per position vs the fp32 bundle, which matches the reference), besides the text equality rate."""
    whisper = _is_whisper(ctx)
    signals = parity_signals() if whisper else builtin_signals()  # Whisper: 50 x 16-token generations is minutes
    kwargs: dict[str, Any] = {"max_new_tokens": 16} if whisper else {}

    def run_reference() -> dict[str, Any]:
        with torch_threads():
            pipe = transformers_pipeline(ctx, "automatic-speech-recognition")
            out = {name: pipe(audio.copy(), **kwargs)["text"] for name, audio in signals.items()}
            logits = {} if whisper else _reference_ctc_logits(pipe, signals)
            return {"text": out, "features": _reference_features(pipe, signals, whisper), "logits": logits}

    expected = reference(ctx, "automatic-speech-recognition", run_reference)
    pipe = edgetf_pipeline(ctx, "automatic-speech-recognition")
    got = {name: pipe(audio.copy(), **kwargs)["text"] for name, audio in signals.items()}
    exact = sum(got[k] == expected["text"][k] for k in signals) / len(signals)
    max_diff = logits_diff = logits_scale = 0.0
    for name, audio in signals.items():
        max_diff = max(max_diff, float(np.abs(pipe.features(audio) - expected["features"][name]).max()))
        if not whisper:
            ours = pipe.logits(audio.copy())[0]
            logits_diff = max(logits_diff, float(np.abs(ours - expected["logits"][name]).max()))
            logits_scale = max(logits_scale, float(np.abs(expected["logits"][name]).max()))
    # reported, not gated: fp32 is judged on text equality (random CTC layers amplify float rounding)
    relative = logits_diff / max(1.0, logits_scale)
    if whisper and ctx.dtype == "fp32":
        pairs = []  # fp32 is judged on text equality with the reference
    elif whisper:
        base = edgetf_pipeline_dtype(ctx, "fp32")
        pairs = [(pipe.token_ids(a, **kwargs), base.token_ids(a, **kwargs)) for a in signals.values()]
    else:
        pairs = [(pipe.token_ids(a), [expected["logits"][k].argmax(-1)]) for k, a in signals.items()]
    tokens = token_agreement(pairs)
    agreement = exact if ctx.dtype == "fp32" else tokens
    return verdict(
        ctx,
        metric="features max diff; fp32: text equality, other dtypes: token agreement",
        max_diff=max_diff,
        agreement=agreement,
        n=len(signals),
        extra={
            "text_equality": exact,
            "token_agreement": tokens,
            **({} if whisper else {"logits_max_diff": logits_diff, "logits_relative_diff": relative}),
            "mismatched": [k for k in signals if got[k] != expected["text"][k]],
        },
    )


def edgetf_pipeline_dtype(ctx: CheckContext, dtype: str) -> Any:
    import edgetf

    return edgetf.pipeline("automatic-speech-recognition", ctx.bundle, dtype=dtype, verify="none")


def token_agreement(pairs: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> float:
    """Matching ids position by position over the longer of each pair of sequences."""
    same = total = 0
    for ours, theirs in pairs:
        for a, b in zip(ours, theirs):
            n = max(len(a), len(b))
            m = min(len(a), len(b))
            same += int(np.sum(np.asarray(a[:m]) == np.asarray(b[:m])))
            total += n
    return same / total if total else 1.0


def _reference_ctc_logits(pipe: Any, signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    fe = pipe.feature_extractor
    out = {}
    for name, audio in signals.items():
        values = fe(audio, sampling_rate=fe.sampling_rate, return_tensors="pt")["input_values"]
        with torch.no_grad():
            out[name] = pipe.model(values).logits[0].numpy()
    return out


def _reference_features(pipe: Any, signals: dict[str, np.ndarray], whisper: bool) -> dict[str, np.ndarray]:
    fe = pipe.feature_extractor
    out = {}
    for name, audio in signals.items():
        processed = fe(audio, sampling_rate=fe.sampling_rate, return_tensors="np")
        key = "input_features" if whisper else "input_values"
        out[name] = np.asarray(processed[key][0])
    return out


def check_audio_classification(ctx: CheckContext) -> dict[str, Any]:
    signals = builtin_signals()

    def run_reference() -> dict[str, Any]:
        with torch_threads():
            pipe = transformers_pipeline(ctx, "audio-classification")
            return {name: pipe(audio.copy(), top_k=None) for name, audio in signals.items()}

    expected = reference(ctx, "audio-classification", run_reference)
    pipe = edgetf_pipeline(ctx, "audio-classification")
    max_diff, agree = 0.0, 0
    for name, audio in signals.items():
        ref, out = expected[name], pipe(audio.copy(), top_k=None)
        ref_scores = {d["label"]: d["score"] for d in ref}
        out_scores = {d["label"]: d["score"] for d in out}
        max_diff = max(max_diff, max(abs(ref_scores[k] - out_scores.get(k, float("inf"))) for k in ref_scores))
        # the top label agrees when the reference scores it as high as its own top label (exact ties, e.g. all
        # labels at 1/n on silence, are ordered arbitrarily by torch.topk)
        agree += ref_scores.get(out[0]["label"], -1.0) >= ref[0]["score"] - TIE
    return verdict(
        ctx,
        metric="label score",
        max_diff=max_diff,
        agreement=agree / len(signals),
        n=len(signals),
        quant_max_diff=QUANT_MAX_DIFF,
    )


register(
    TaskExport(
        "automatic-speech-recognition",
        "automatic-speech-recognition",
        check_speech_recognition,
        build_tiny=build_speech,
    ),
    TaskExport(
        "audio-classification",
        "audio-classification",
        check_audio_classification,
        build_tiny=build_speech,
    ),
)
