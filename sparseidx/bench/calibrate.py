"""The cost model's two reference loops, timed on this host now: ns per posting and per item.

The model P x 1 ns + N x 0.6 ns comes from two compiled loops measured once on this
kind of machine: a scatter-add of postings (random item, weight) into a dense
accumulator of N floats, and a top-10 pass over N floats. On a shared host their
speed drifts by up to 2x from hour to hour (neighbours compete for caches and memory
bandwidth), so the bench times them beside every setting: the same model in the
run's own units tells the engine's overheads apart from the host's mood.
"""

from __future__ import annotations

import time

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _scatter_add(items, weights, acc):
    for p in range(np.uint64(items.shape[0])):
        acc[items[p]] += weights[p]


@nb.njit(cache=True)
def _top10(scores, best):
    """The 10 largest scores into ``best`` (descending), one pass."""
    best[:] = -np.inf
    floor = best[9]
    for i in range(scores.shape[0]):
        s = scores[i]
        if s > floor:
            j = 9
            while j > 0 and best[j - 1] < s:
                best[j] = best[j - 1]
                j -= 1
            best[j] = s
            floor = best[9]


def host_costs(n_items: int, postings: int = 1 << 20, repeat: int = 5, seed: int = 0) -> dict:
    """Median ns per posting (scatter-add into ``n_items`` floats) and ns per item (top-10 pass)."""
    rng = np.random.default_rng(seed)
    n_items = max(int(n_items), 1)
    items = rng.integers(0, n_items, postings).astype(np.uint32)
    weights = rng.standard_normal(postings).astype(np.float32)
    acc = np.zeros(n_items, dtype=np.float32)
    scores = rng.standard_normal(max(n_items, 1 << 16)).astype(np.float32)  # long enough to time
    best = np.empty(10, dtype=np.float32)
    _scatter_add(items[:16], weights[:16], acc)
    _top10(scores[:16], best)
    per_posting, per_item = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _scatter_add(items, weights, acc)
        t1 = time.perf_counter()
        _top10(scores, best)
        t2 = time.perf_counter()
        per_posting.append((t1 - t0) / postings * 1e9)
        per_item.append((t2 - t1) / len(scores) * 1e9)
    return {"ns_per_posting": float(np.median(per_posting)), "ns_per_item": float(np.median(per_item))}
