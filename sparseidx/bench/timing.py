"""Latency and throughput of any index with the ``search_detailed`` contract."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp


def single_query_latency(index, histories: sp.csr_matrix, k: int = 20, repeat: int = 1, **options) -> dict:
    """Per-query latency of one-history calls on one thread, as seen by a caller (microseconds).

    Every history is answered by its own ``search_detailed`` call (Python overhead
    included); the first call is a warm-up. Returns p50, p90, p99, mean and the
    mean number of postings scanned.
    """
    histories = sp.csr_matrix(histories)
    options = index.Options.parse(options, threads=1)  # made once, as a caller would
    index.search_detailed(histories[:1], k, options)
    times = []
    postings = []
    for _ in range(repeat):
        for q in range(histories.shape[0]):
            row = histories[q]
            t0 = time.perf_counter()
            res = index.search_detailed(row, k, options)
            times.append(time.perf_counter() - t0)
            postings.append(res.postings[0])
    us = np.array(times) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean()),
            "queries": int(len(us)), "postings_per_query": float(np.mean(postings))}


def batch_throughput(index, histories: sp.csr_matrix, k: int = 20, threads: int | None = None,
                     repeat: int = 3, **options) -> dict:
    """Queries per second of one batched call over all histories (median of ``repeat`` runs)."""
    options = index.Options.parse(options, threads=threads)
    index.search_detailed(histories[: min(64, histories.shape[0])], k, options)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        index.search_detailed(histories, k, options)
        runs.append(time.perf_counter() - t0)
    seconds = float(np.median(runs))
    return {"qps": histories.shape[0] / seconds, "seconds": seconds, "queries": int(histories.shape[0]),
            "threads": threads}


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
