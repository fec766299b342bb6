"""edgetf.ray.Predictor: the same outputs as a local loop, called directly and through Ray Data
(a local Ray instance with 2 CPUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import close

import edgetf
from edgetf.ray import Predictor

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [f"review {i}: " + ("great fun " if i % 3 else "a slow, dull film ") * (1 + i % 4) for i in range(24)]


@pytest.fixture(scope="module")
def bundle(tiny):
    return str(tiny.get("distilbert-sst2").bundle)


@pytest.fixture(scope="module")
def local(bundle):
    classify = edgetf.pipeline("text-classification", bundle, dtype="fp32")
    return [classify([t])[0] for t in TEXTS]


def test_predictor_on_numpy_and_pandas_batches(bundle, local):
    predictor = Predictor("text-classification", bundle, dtype="fp32", pipeline_batch_size=4)
    out = predictor({"inputs": np.array(TEXTS), "id": np.arange(len(TEXTS))})
    assert out["id"].tolist() == list(range(len(TEXTS)))
    assert close(list(out["outputs"]), local, 1e-5)
    pd = pytest.importorskip("pandas")
    frame = predictor(pd.DataFrame({"inputs": TEXTS[:3]}))
    assert close(frame["outputs"].tolist(), local[:3], 1e-5)
    top = Predictor("text-classification", bundle, dtype="fp32", top_k=None, output_column="labels")
    assert len(top({"inputs": np.array(TEXTS[:2])})["labels"][0]) == 2  # every label of the 2-label model
    with pytest.raises(KeyError, match="no column 'inputs'"):
        predictor({"text": np.array(["x"])})


def test_ray_data_map_batches_equals_a_local_loop(bundle, local):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    # workers import this checkout's edgetf
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}},
    )
    try:
        ds = ray.data.from_items([{"inputs": t, "row": i} for i, t in enumerate(TEXTS)])
        options = edgetf.SessionOptions(intra_op_threads=1)
        out = ds.map_batches(
            Predictor,
            fn_constructor_kwargs={
                "task": "text-classification",
                "model": bundle,
                "dtype": "fp32",
                "session_options": options,
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=5,
            num_cpus=1,
        ).take_all()
    finally:
        ray.shutdown()
    rows = sorted(out, key=lambda r: r["row"])
    assert [r["inputs"] for r in rows] == TEXTS
    assert close([dict(r["outputs"]) for r in rows], local, 1e-5)
