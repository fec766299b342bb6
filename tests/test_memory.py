"""RSS stays bounded over many calls (after warm-up)."""

import resource

import pytest

import edgetf


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


@pytest.mark.slow
def test_ten_thousand_text_calls_do_not_grow_memory(tiny):
    pipe = edgetf.pipeline("text-classification", tiny.get("distilbert-sst2").bundle)
    texts = [f"sample {i} " + "word " * (i % 50) for i in range(100)]
    for t in texts * 3:  # warm-up: arenas, tokenizer caches
        pipe(t)
    start = rss_mb()
    for i in range(10_000):
        pipe(texts[i % len(texts)], top_k=None)
    growth = rss_mb() - start
    print(f"RSS growth over 10,000 text-classification calls: {growth:.1f} MB (from {start:.0f} MB)")
    assert growth < 20
