"""The lower triangle of G = X^T X, formed by columns in parallel without the full product (numba).

Column j of G's lower triangle is sum over the users u of item j of x_uj * X[u, j:]. Two passes
over the columns: one counts each column's non-zeros, one fills them, rows sorted; both split the
columns among threads, each with work arrays of n entries. Memory is the lower triangle itself
(int32 rows, float32 values) plus a CSC copy of X: neither the full product nor scipy's
intermediates. Work is sum over users of |x_u|^2 / 2 per pass.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ..progress import stage
from ._parallel import balanced_ranges, times_column, work_column


@nb.njit(parallel=True, cache=True)
def _columns(n, starts, x_indptr, x_items, x_vals, c_indptr, c_users, c_vals, indptr, rows, vals, fill):
    """Every column of the lower triangle: its count into indptr[j + 1] (``fill`` False), or its rows
    (sorted) and values at indptr[j] (``fill`` True)."""
    for chunk in nb.prange(starts.shape[0] - 1):
        w, mark, touched = work_column(n)
        for j in range(starts[chunk], starts[chunk + 1]):
            # column j of X^T X from row j down: X^T (the rows of X) times column j of X
            nt = times_column(c_indptr[j], c_indptr[j + 1], c_users, c_vals, x_indptr, x_items, x_vals, j, w, mark,
                              touched)
            order = np.sort(touched[:nt]) if fill else touched[:nt]
            if not fill:
                indptr[j + 1] = nt
            for t in range(nt):
                i = order[t]
                if fill:
                    rows[indptr[j] + t] = i
                    vals[indptr[j] + t] = w[i]
                w[i] = 0.0
                mark[i] = 0


@nb.njit(cache=True)
def _column_norms_sq(indptr, rows, vals):
    """Squared Euclidean norms of the columns of the symmetric G, from its lower triangle."""
    n = indptr.shape[0] - 1
    out = np.zeros(n, dtype=np.float64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = rows[p]
            v2 = np.float64(vals[p]) * vals[p]
            out[j] += v2
            if i != j:
                out[i] += v2
    return out


def gram_lower(X: sp.spmatrix) -> tuple[sp.csc_matrix, np.ndarray]:
    """(lower triangle of G = X^T X as CSC with sorted rows, float32 values; squared column norms of G)."""
    X = sp.csr_matrix(X)
    X.sort_indices()
    n = X.shape[1]
    C = X.tocsc()  # the users of every item
    work = np.asarray(X.T @ np.diff(X.indptr).astype(np.float64)).ravel()  # products per column, at most
    starts = balanced_ranges(work)
    args = (X.indptr, X.indices, X.data, C.indptr, C.indices, C.data)
    with stage(f"X^T X lower triangle by columns ({n:,} items, {int(work.sum()):,} user-item products)"):
        indptr = np.zeros(n + 1, dtype=np.int64)
        _columns(n, starts, *args, indptr, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32), False)
        np.cumsum(indptr, out=indptr)
        rows = np.empty(indptr[-1], dtype=np.int32)
        vals = np.empty(indptr[-1], dtype=np.float32)
        _columns(n, starts, *args, indptr, rows, vals, True)
    del C
    return sp.csc_matrix((vals, rows, indptr), shape=(n, n)), _column_norms_sq(indptr, rows, vals)
