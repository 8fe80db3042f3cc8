"""The compiled kernels' shared parts: columns split among threads by their cost, and the sparse
accumulator (a dense work column, its marks and the list of rows touched) each thread fills with a
sparse matrix times a sparse column (``times_column``). The accumulation is one loop written out
there: a helper per added entry, inlined into it, made the UMR kernels 2.7x slower."""

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


@nb.njit(cache=True)
def times_column(lo, hi, rows, vals, m_indptr, m_rows, m_vals, min_row, w, mark, touched):
    """Accumulate M v into w, rows >= ``min_row`` only, for the sparse column v = (rows[lo:hi], vals[lo:hi])
    and M compressed by columns (m_indptr, m_rows, m_vals), in float64; returns how many rows of w it
    touched (listed in ``touched``, flagged in ``mark``)."""
    nt = 0
    for p in range(lo, hi):
        r = rows[p]
        v = np.float64(vals[p])
        for q in range(m_indptr[r], m_indptr[r + 1]):
            i = m_rows[q]
            if i >= min_row:
                w[i] += m_vals[q] * v
                if mark[i] == 0:
                    mark[i] = 1
                    touched[nt] = i
                    nt += 1
    return nt
