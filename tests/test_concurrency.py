"""One pipeline shared by 8 threads, and pipelines shipped to worker processes by pickle.

Thread-safety guarantee (README): a pipeline object may be called from many threads at once;
sessions are opened once under a lock and onnxruntime's run is thread-safe; options are per call.
"""

import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

import edgetf

TEXTS = [f"text number {i}: {'good ' * (i % 7)}{'bad ' * (i % 5)}café 東京 😀" for i in range(40)]


@pytest.fixture(scope="module")
def classify(tiny):
    return edgetf.pipeline("text-classification", tiny.get("distilbert-sst2").bundle)


@pytest.mark.slow
def test_eight_threads_thousands_of_calls_equal_sequential(classify):
    expected = [classify(t, top_k=None) for t in TEXTS]
    jobs = [(i % len(TEXTS), [None, 1, 2][i % 3]) for i in range(2400)]

    def call(job):
        idx, top_k = job
        return idx, top_k, classify(TEXTS[idx], top_k=top_k)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == len(jobs)
    for idx, top_k, got in results:
        want = expected[idx] if top_k is None else expected[idx][:top_k]
        assert got == want


def test_first_calls_from_many_threads_open_one_session(tiny):
    pipe = edgetf.pipeline("text-classification", tiny.get("bert-sentiment").bundle)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(pool.map(lambda t: pipe(t), TEXTS[:16]))
    assert len(pipe._sessions) == 1 and outs == [pipe(t) for t in TEXTS[:16]]


def _classify_in_worker(args):
    pipe, text = args
    return pipe(text, top_k=None)


def test_pickled_pipeline_runs_in_a_process_pool(classify):
    blob = pickle.dumps(classify)
    assert len(blob) < 10_000  # pickles by bundle path and options, not by weights
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.map(_classify_in_worker, [(classify, t) for t in TEXTS[:6]])
    assert got == [classify(t, top_k=None) for t in TEXTS[:6]]


def test_pickle_keeps_options(tiny):
    pipe = edgetf.pipeline("text-classification", tiny.get("roberta-sentiment").bundle, dtype="fp32", top_k=2)
    clone = pickle.loads(pickle.dumps(pipe))
    assert (clone.dtype, clone._defaults) == ("fp32", {"top_k": 2}) and clone("x") == pipe("x")
