"""`python -m export SOURCE --task T --out DIR` on checkpoints that are NOT catalog entries.

Each checkpoint is built here from a recipe of its own (other sizes and settings than the catalog's tiny
recipes, sibling architectures), exported through the CLI exactly as a user runs it, and then compared
with the reference transformers pipeline on inputs the export's verification never saw. The family
table (edgetf/families.py) and the built-in verification inputs (export/inputs.py) are all the export
has to go on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import close

from export import tiny
from export.__main__ import main as export_main

UNSEEN = ["A quiet morning in the mountains, far from the city.", "Terrible service, cold food, never again."]


def _tokenizer(kind: str, cls: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "class": cls, "vocab_size": 700, **extra}


ENCODER = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 48, "intermediate_size": 96}
LABELS = {"id2label": {"0": "no", "1": "maybe", "2": "yes"}}
NER = {"id2label": {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC"}}

# (name, task, recipe): architectures users export next, each at settings of its own.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "distilbert-cls",
        "text-classification",
        {
            "architecture": "DistilBertForSequenceClassification",
            "config": {
                "model_type": "distilbert",
                "dim": 48,
                "hidden_dim": 96,
                "n_layers": 1,
                "n_heads": 4,
                "max_position_embeddings": 80,
                "initializer_range": 0.2,
                **LABELS,
            },
            "tokenizer": _tokenizer("wordpiece", "DistilBertTokenizerFast", lowercase=True),
        },
    ),
    (
        "roberta-ner",
        "token-classification",
        {
            "architecture": "RobertaForTokenClassification",
            "config": {
                "model_type": "roberta",
                **ENCODER,
                "max_position_embeddings": 90,
                "pad_token_id": 1,
                "initializer_range": 0.2,
                **NER,
            },
            "tokenizer": _tokenizer("bpe", "RobertaTokenizerFast", model_max_length=88),
        },
    ),
    (
        "xlm-roberta-qa",
        "question-answering",
        {
            "architecture": "XLMRobertaForQuestionAnswering",
            "config": {
                "model_type": "xlm-roberta",
                **ENCODER,
                "max_position_embeddings": 130,
                "pad_token_id": 1,
                "initializer_range": 0.2,
            },
            "tokenizer": _tokenizer("bpe", "XLMRobertaTokenizerFast", style="roberta", model_max_length=128),
        },
    ),
    (
        "albert-fill-mask",
        "fill-mask",
        {
            "architecture": "AlbertForMaskedLM",
            "config": {
                "model_type": "albert",
                "embedding_size": 16,
                **ENCODER,
                "max_position_embeddings": 96,
                "initializer_range": 0.2,
            },
            "tokenizer": _tokenizer("wordpiece", "AlbertTokenizerFast", lowercase=True),
        },
    ),
    (
        "electra-cls",
        "text-classification",
        {
            "architecture": "ElectraForSequenceClassification",
            "config": {
                "model_type": "electra",
                "embedding_size": 32,
                **ENCODER,
                "max_position_embeddings": 96,
                "initializer_range": 0.2,
                **LABELS,
            },
            "tokenizer": _tokenizer("wordpiece", "ElectraTokenizerFast", lowercase=True),
        },
    ),
    (
        "deberta-v2-ner",
        "token-classification",
        {
            "architecture": "DebertaV2ForTokenClassification",
            "config": {
                "model_type": "deberta-v2",
                **ENCODER,
                "max_position_embeddings": 96,
                "type_vocab_size": 0,
                "relative_attention": True,
                "position_buckets": 16,
                "pos_att_type": ["p2c", "c2p"],
                "initializer_range": 0.2,
                **NER,
            },
            "tokenizer": _tokenizer("wordpiece", "BertTokenizerFast", lowercase=False),
        },
    ),
    (
        "mpnet-embeddings",
        "feature-extraction",
        {
            "architecture": "MPNetModel",
            "config": {"model_type": "mpnet", **ENCODER, "max_position_embeddings": 100, "initializer_range": 0.2},
            "tokenizer": _tokenizer("wordpiece", "MPNetTokenizerFast", lowercase=True, model_max_length=96),
        },
    ),
    (
        "bart-summarization",
        "summarization",
        {
            "architecture": "BartForConditionalGeneration",
            "config": {
                "model_type": "bart",
                "d_model": 32,
                "encoder_layers": 1,
                "decoder_layers": 2,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "decoder_ffn_dim": 48,
                "max_position_embeddings": 128,
                "init_std": 0.1,
            },
            "tokenizer": _tokenizer("bpe", "BartTokenizerFast", model_max_length=128),
        },
    ),
    (
        "t5-untied-translation",
        "translation",
        {
            "architecture": "T5ForConditionalGeneration",
            "config": {
                "model_type": "t5",
                "decoder_start_token_id": 0,
                "d_model": 32,
                "d_ff": 64,
                "d_kv": 8,
                "num_layers": 2,
                "num_decoder_layers": 1,
                "num_heads": 4,
                "tie_word_embeddings": False,
                "feed_forward_proj": "gated-gelu",
            },
            "tokenizer": _tokenizer("unigram", "T5TokenizerFast", model_max_length=256),
        },
    ),
    (
        "mbart-translation",
        "translation",
        {
            "architecture": "MBartForConditionalGeneration",
            "config": {
                "model_type": "mbart",
                "d_model": 32,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "decoder_ffn_dim": 64,
                "max_position_embeddings": 128,
                "init_std": 0.1,
            },
            "tokenizer": _tokenizer("bpe", "BartTokenizerFast", model_max_length=128),
        },
    ),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export-any")


def _build(workdir: Path, name: str, recipe: dict[str, Any]) -> Path:
    ckpt = workdir / "checkpoints" / name
    if not (ckpt / "config.json").is_file():
        tiny.build_generic(recipe, ckpt, seed=7)
    return ckpt


_EXPORTED: dict[str, tuple[Path, Path, int]] = {}


def _export(workdir: Path, name: str, task: str, recipe: dict[str, Any], *extra: str) -> tuple[Path, Path, int]:
    key = f"{name}:{task}"
    if key not in _EXPORTED:
        ckpt = _build(workdir, name, recipe)
        out = workdir / "bundles" / f"{name}-{task}"
        code = export_main([str(ckpt), "--task", task, "--out", str(out), "--dtype", "fp32", "q8", *extra])
        _EXPORTED[key] = (ckpt, out, code)
    return _EXPORTED[key]


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "edgetf.json").read_text())


def _reference(task: str, ckpt: Path) -> Any:
    import transformers

    return transformers.pipeline(task, model=str(ckpt), device="cpu")


def _edgetf(task: str, bundle: Path) -> Any:
    import edgetf

    return edgetf.pipeline(task, bundle, dtype="fp32")


def _outputs(task: str, pipe: Any) -> list[Any]:
    """The task's output on inputs the verification never saw, in the reference's own shapes."""
    if task == "text-classification":
        return [pipe(text, top_k=None) for text in UNSEEN]
    if task == "token-classification":
        return [pipe(text, aggregation_strategy="simple") for text in UNSEEN]
    if task == "question-answering":
        return [pipe(question="Where is it quiet?", context=UNSEEN[0], top_k=2)]
    if task == "fill-mask":
        mask = getattr(pipe, "mask_token", None) or pipe.tokenizer.mask_token  # edgetf's, else transformers'
        return [pipe(f"A quiet {mask} in the mountains.", top_k=3)]
    if task == "feature-extraction":
        return [np.asarray(pipe(text)).round(4).tolist() for text in UNSEEN]
    kwargs = {"max_new_tokens": 8, "num_beams": 2, "do_sample": False, "return_tensors": True}
    return [pipe(text, **kwargs) for text in UNSEEN]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task", "recipe"), CASES, ids=[c[0] for c in CASES])
def test_cli_exports_a_non_catalog_checkpoint_with_reference_parity(workdir, name, task, recipe):
    ckpt, bundle, code = _export(workdir, name, task, recipe)
    assert code == 0
    manifest = _manifest(bundle)
    assert manifest["task"] == task
    fp32 = manifest["dtypes"]["fp32"]
    assert fp32["passed"] and fp32["parity"]["max_diff"] <= 1e-4
    assert "passed" in manifest["dtypes"]["q8"]  # verified (random weights: a verdict, either way)
    assert manifest["extra"]["export"]["model_type"] == recipe["config"]["model_type"]
    ref = _outputs(task, _reference(task, ckpt))
    got = _outputs(task, _edgetf(task, bundle))
    if task == "feature-extraction":
        assert np.allclose(np.asarray(ref[0]), np.asarray(got[0]), atol=2e-4)
    elif task in ("summarization", "translation"):
        key = "summary_token_ids" if task == "summarization" else "translation_token_ids"
        assert [[int(t) for t in r[key]] for rs in ref for r in rs] == [
            [int(t) for t in g[key]] for gs in got for g in gs
        ]
    else:
        assert close(json.loads(json.dumps(ref, default=float)), json.loads(json.dumps(got, default=float)), tol=1e-4)


@pytest.mark.slow
def test_task_decides_what_a_masked_lm_checkpoint_is_exported_for(workdir):
    """bert-base-uncased exported for embeddings: a BertForMaskedLM checkpoint, --task feature-extraction."""
    recipe = {
        "architecture": "BertForMaskedLM",
        "config": {"model_type": "bert", **ENCODER, "max_position_embeddings": 96, "initializer_range": 0.2},
        "tokenizer": _tokenizer("wordpiece", "BertTokenizerFast", lowercase=True),
    }
    for task in ("fill-mask", "feature-extraction"):
        ckpt, bundle, code = _export(workdir, "bert-mlm", task, recipe)
        assert code == 0
        manifest = _manifest(bundle)
        assert manifest["task"] == task and manifest["dtypes"]["fp32"]["passed"]
        assert json.loads((bundle / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
        ref, got = _outputs(task, _reference(task, ckpt)), _outputs(task, _edgetf(task, bundle))
        if task == "feature-extraction":
            assert np.allclose(np.asarray(ref[0]), np.asarray(got[0]), atol=2e-4)
        else:
            assert close(ref, got, tol=1e-4)


@pytest.mark.slow
def test_folder_without_manifest_serves_the_asked_task(workdir, tmp_path):
    """A transformers.js-style folder (no edgetf.json) of a masked-LM checkpoint exported for feature
    extraction opens with task="feature-extraction": config.json's architecture is only a guess."""
    import edgetf

    recipe = {
        "architecture": "BertForMaskedLM",
        "config": {"model_type": "bert", **ENCODER, "max_position_embeddings": 96, "initializer_range": 0.2},
        "tokenizer": _tokenizer("wordpiece", "BertTokenizerFast", lowercase=True),
    }
    ckpt, bundle, code = _export(workdir, "bert-mlm", "feature-extraction", recipe)
    assert code == 0
    folder = tmp_path / "onnx-community"
    shutil.copytree(bundle, folder)
    (folder / "edgetf.json").unlink()
    pipe = edgetf.pipeline("feature-extraction", folder, dtype="fp32")
    ref = _outputs("feature-extraction", _reference("feature-extraction", ckpt))
    assert np.allclose(np.asarray(ref[0]), np.asarray(_outputs("feature-extraction", pipe)[0]), atol=2e-4)
    assert edgetf.pipeline(None, folder).task == "fill-mask"  # no task asked: config.json's guess


# -- one-line errors, nothing half-written ---------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_ckpt(workdir):
    return _build(
        workdir,
        "bert-mlm",
        {
            "architecture": "BertForMaskedLM",
            "config": {"model_type": "bert", **ENCODER, "max_position_embeddings": 96, "initializer_range": 0.2},
            "tokenizer": _tokenizer("wordpiece", "BertTokenizerFast", lowercase=True),
        },
    )


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = export_main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_wrong_task_for_the_architecture_names_what_it_serves(bert_ckpt, tmp_path, capsys):
    out = tmp_path / "b"
    code, text = _run_cli(capsys, str(bert_ckpt), "--task", "automatic-speech-recognition", "--out", str(out))
    assert code == 2 and "Traceback" not in text
    assert "'bert' checkpoint cannot be exported for 'automatic-speech-recognition'" in text
    assert "fill-mask" in text and "whisper" in text
    assert not out.exists() and not list(tmp_path.glob(".b.partial-*"))


def test_unknown_task_lists_the_supported_ones(bert_ckpt, tmp_path, capsys):
    code, text = _run_cli(capsys, str(bert_ckpt), "--task", "fil-mask", "--out", str(tmp_path / "b"))
    assert code == 2 and "does not support task 'fil-mask'" in text and "fill-mask" in text


def test_checkpoint_without_weights(bert_ckpt, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(bert_ckpt / "config.json", folder)
    code, text = _run_cli(capsys, str(folder), "--task", "fill-mask", "--out", str(tmp_path / "b"))
    assert code == 2 and "no weights" in text and "model.safetensors" in text
    assert not (tmp_path / "b").exists()


def test_folder_that_is_no_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, text = _run_cli(capsys, str(tmp_path / "empty"), "--task", "fill-mask", "--out", str(tmp_path / "b"))
    assert code == 2 and "no config.json" in text


def test_architecture_optimum_cannot_export_names_the_supported_families(bert_ckpt, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(bert_ckpt, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "rwkv"
    (folder / "config.json").write_text(json.dumps(config))
    code, text = _run_cli(capsys, str(folder), "--task", "fill-mask", "--out", str(tmp_path / "b"))
    assert code == 2 and "optimum-onnx cannot export a 'rwkv' checkpoint" in text
    assert "fill-mask exports from: bert" in text and "Traceback" not in text


def test_out_that_holds_something_else_is_refused(bert_ckpt, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not a bundle")
    code, text = _run_cli(capsys, str(bert_ckpt), "--task", "fill-mask", "--out", str(out))
    assert code == 2 and "not an edgetf bundle" in text
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"]


def test_failing_export_leaves_nothing_and_keeps_the_previous_bundle(bert_ckpt, tmp_path, monkeypatch):
    """An error midway (here: optimum failing) removes the partial folder; a bundle already at --out stays."""
    from export import convert
    from export.build import export_entry
    from export.catalog import Entry

    out = tmp_path / "bundle"
    out.mkdir()
    (out / "edgetf.json").write_text("{}")

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("optimum failed")

    monkeypatch.setattr(convert, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="optimum failed"):
        export_entry(Entry("bundle", "fill-mask", str(bert_ckpt)), tmp_path, tiny_model=False, log=lambda _m: None)
    assert [p.name for p in out.iterdir()] == ["edgetf.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
