"""The compiled kernels' shared parts: columns split among threads by their cost, and the sparse
accumulator (a dense work column, its marks and the list of rows touched) each thread uses. The
accumulation itself stays written out in each kernel's inner loop: a shared inlined helper there
made the UMR kernels 2.7x slower."""

from __future__ import annotations

import numba as nb
import numpy as np

RANGES_PER_THREAD = 8  # uneven columns (popular items, dense late columns): more ranges than threads


def balanced_ranges(work: np.ndarray) -> np.ndarray:
    """Boundaries splitting len(work) columns into ranges of about equal total ``work``, several per thread."""
    parts = nb.get_num_threads() * RANGES_PER_THREAD
    cum = np.cumsum(work, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts) if len(cum) and cum[-1] > 0 else []
    return np.unique(np.r_[0, cuts, len(work)]).astype(np.int64)


@nb.njit(cache=True)
def work_column(n: int):
    """(w, mark, touched): a zeroed float64 accumulator of n rows, its zeroed marks, room to list rows."""
    return np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.uint8), np.empty(n, dtype=np.int64)

