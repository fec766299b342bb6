"""``torch.topk(values, k, sorted=False)`` on CPU, element order included, in pure Python.

Mask2Former's instance post-processing keeps the order torch.topk returns, and that order decides
segment ids and which segment owns overlapping pixels. PyTorch's CPU kernel (ATen TopKImpl.h)
selects with ``std::partial_sort`` when ``k * 64 <= n`` and with ``std::nth_element`` otherwise,
comparing ``(value, index)`` pairs by value only (NaN counts as largest). This module replays
libstdc++'s algorithms step by step (introselect with median-of-three pivots, heap select,
insertion sort), which is what PyTorch's Linux wheels are built with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Pair = tuple[float, int]


def _greater(x: Pair, y: Pair) -> bool:
    """torch's comparator for largest=True: NaN first, then larger values."""
    a, b = x[0], y[0]
    return (math.isnan(a) and not math.isnan(b)) or a > b


def _adjust_heap(q: list[Pair], first: int, hole: int, length: int, value: Pair) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if _greater(q[first + child], q[first + child - 1]):
            child -= 1
        q[first + hole] = q[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        q[first + hole] = q[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and _greater(q[first + parent], value):
        q[first + hole] = q[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    q[first + hole] = value


def _make_heap(q: list[Pair], first: int, last: int) -> None:
    length = last - first
    if length < 2:
        return
    parent = (length - 2) // 2
    while True:
        _adjust_heap(q, first, parent, length, q[first + parent])
        if parent == 0:
            return
        parent -= 1


def _pop_heap(q: list[Pair], first: int, last: int, result: int) -> None:
    value = q[result]
    q[result] = q[first]
    _adjust_heap(q, first, 0, last - first, value)


def _heap_select(q: list[Pair], first: int, middle: int, last: int) -> None:
    _make_heap(q, first, middle)
    for i in range(middle, last):
        if _greater(q[i], q[first]):
            _pop_heap(q, first, middle, i)


def _sort_heap(q: list[Pair], first: int, last: int) -> None:
    while last - first > 1:
        last -= 1
        _pop_heap(q, first, last, last)


def _insertion_sort(q: list[Pair], first: int, last: int) -> None:
    if first == last:
        return
    for i in range(first + 1, last):
        value = q[i]
        if _greater(value, q[first]):
            q[first + 1 : i + 1] = q[first:i]
            q[first] = value
        else:
            j = i
            while _greater(value, q[j - 1]):
                q[j] = q[j - 1]
                j -= 1
            q[j] = value


def _move_median_to_first(q: list[Pair], result: int, a: int, b: int, c: int) -> None:
    if _greater(q[a], q[b]):
        if _greater(q[b], q[c]):
            pick = b
        elif _greater(q[a], q[c]):
            pick = c
        else:
            pick = a
    elif _greater(q[a], q[c]):
        pick = a
    elif _greater(q[b], q[c]):
        pick = c
    else:
        pick = b
    q[result], q[pick] = q[pick], q[result]


def _unguarded_partition(q: list[Pair], first: int, last: int, pivot: int) -> int:
    while True:
        while _greater(q[first], q[pivot]):
            first += 1
        last -= 1
        while _greater(q[pivot], q[last]):
            last -= 1
        if not first < last:
            return first
        q[first], q[last] = q[last], q[first]
        first += 1


def _nth_element(q: list[Pair], nth: int) -> None:
    first, last = 0, len(q)
    if first == last or nth == last:
        return
    depth = 2 * (int(last - first).bit_length() - 1)
    while last - first > 3:
        if depth == 0:
            _heap_select(q, first, nth + 1, last)
            q[first], q[nth] = q[nth], q[first]
            return
        depth -= 1
        mid = first + (last - first) // 2
        _move_median_to_first(q, first, first + 1, mid, last - 1)
        cut = _unguarded_partition(q, first + 1, last, first)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(q, first, last)


def topk_unsorted(values: Sequence[float], k: int) -> list[int]:
    """Indices torch.topk(torch.tensor(values), k, sorted=False).indices gives on CPU, in its order."""
    n = len(values)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and {n}")
    if k == 0:
        return []
    q: list[Pair] = [(float(v), i) for i, v in enumerate(values)]
    if k * 64 <= n:  # std::partial_sort: heap select, then sort the heap
        _heap_select(q, 0, k, n)
        _sort_heap(q, 0, k)
    else:  # std::nth_element around position k - 1
        _nth_element(q, k - 1)
    return [index for _, index in q[:k]]
