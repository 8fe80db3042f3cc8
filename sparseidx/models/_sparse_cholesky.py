"""The sparse route to Cholesky embeddings: no N x N matrix, memory that grows with non-zeros.

1. SANSA's sparse approximate inverse P~ = W^T D^-1 W of X^T X + l2 I (``Sansa.approximate_inverse``).
2. For every item i (items most popular first), the entries P~[i, c] with more popular items c,
   kept to the ``candidates`` largest in magnitude (``lower_rows``), and the diagonal of P~.
3. An incomplete Cholesky factor of beta D_P~ - P~ row by row (``incomplete_cholesky``): row i
   solves against the rows above on the kept entries of P~'s row i only (no fill), its diagonal
   takes every entry computed, and the row is then cut to its diagonal and k - 1 largest others
   before later rows use it, which is where the dense route cuts it too, only later.

With the exact inverse, every entry kept and k = None this is the dense route's factor; with cuts,
what limits the route is how well P~ approximates P (docs/sparse-cholesky.md).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ._parallel import balanced_ranges, times_column, work_column


def lower_rows(W: sp.csr_matrix, D: np.ndarray, perm: np.ndarray, candidates: int | None
               ) -> tuple[sp.csr_matrix, np.ndarray]:
    """(C, diag): the strict lower triangle of P~ = W^T D^-1 W with items in ``perm``'s order, each row kept to
    its ``candidates`` largest-|value| entries (None: all), as CSR with sorted columns; and diag(P~) in that order.

    ``W`` is factor rows x items. Memory: the caller's W, two copies (by rows and by columns, items rarest
    first) and the kept entries; never a row of P~ per item.
    """
    n = W.shape[1]
    rarest_first = np.ascontiguousarray(perm[::-1])
    Wr = sp.csr_matrix(W[:, rarest_first])  # columns: items rarest first, so "rows below j" = more popular items
    Wr.sort_indices()
    Wc = sp.csc_matrix(Wr)
    Wc.sort_indices()
    scaled = Wc.data / D[Wc.indices]  # the columns of D^-1 W
    cost = np.zeros(n, dtype=np.float64)
    _column_costs(Wc.indptr, Wc.indices, Wr.indptr, cost)
    m = n if candidates is None else min(int(candidates), n)
    out_rows = np.empty((n, m), dtype=np.int32)
    out_vals = np.empty((n, m), dtype=np.float64)
    out_cnt = np.zeros(n, dtype=np.int64)
    diag = np.zeros(n, dtype=np.float64)
    _lower_columns(balanced_ranges(cost), Wc.indptr, Wc.indices, scaled, Wr.indptr, Wr.indices, Wr.data, m,
                   out_rows, out_vals, out_cnt, diag)
    keep = np.arange(m)[None, :] < out_cnt[:, None]
    rows = out_rows[keep]  # by column j' ascending, then row r' ascending
    vals = out_vals[keep]
    del out_rows, out_vals, keep
    # column j' (rarest first) holds rows r' > j': in the popularity order that is row n-1-j' with columns
    # n-1-r', so the entries reversed are the rows in order, each with its columns ascending
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_cnt[::-1], out=indptr[1:])
    C = sp.csr_matrix(((vals[::-1]).copy(), (n - 1 - rows[::-1]).astype(np.int32), indptr), shape=(n, n))
    return C, diag[::-1].copy()


@nb.njit(cache=True)
def _column_costs(v_indptr, v_rows, m_indptr, cost):
    """Entries ``times_column`` visits for every column of W (the lengths of the rows of W it meets)."""
    for j in range(v_indptr.shape[0] - 1):
        c = 0.0
        for p in range(v_indptr[j], v_indptr[j + 1]):
            r = v_rows[p]
            c += m_indptr[r + 1] - m_indptr[r]
        cost[j] = c + 1.0


@nb.njit(parallel=True, cache=True)
def _lower_columns(starts, v_indptr, v_rows, v_vals, m_indptr, m_rows, m_vals, m, out_rows, out_vals, out_cnt,
                   diag):
    """For every column j of P~ = W^T (D^-1 W): diag[j] = P~[j, j] and the m largest-|value| entries P~[r, j],
    r > j, sorted by r, into out_rows[j], out_vals[j] (out_cnt[j] of them); columns split among threads."""
    n = diag.shape[0]
    for chunk in nb.prange(starts.shape[0] - 1):
        w, mark, touched = work_column(n)
        rows = np.empty(n, dtype=np.int64)
        mags = np.empty(n, dtype=np.float64)
        for j in range(starts[chunk], starts[chunk + 1]):
            nt = times_column(v_indptr[j], v_indptr[j + 1], v_rows, v_vals, m_indptr, m_rows, m_vals, j, w, mark,
                              touched)
            c = 0
            for t in range(nt):
                r = touched[t]
                if r == j:
                    diag[j] = w[r]
                elif w[r] != 0.0:
                    rows[c] = r
                    mags[c] = abs(w[r])
                    c += 1
            if c > m:
                c = _keep_largest(rows, mags, c, m)
            chosen = np.sort(rows[:c])
            for t in range(c):
                out_rows[j, t] = chosen[t]
                out_vals[j, t] = w[chosen[t]]
            out_cnt[j] = c
            for t in range(nt):
                w[touched[t]] = 0.0
                mark[touched[t]] = 0


@nb.njit(cache=True)
def _keep_largest(items, mags, c, m):
    """Compact ``items[:c]`` in place to the m with the largest ``mags`` (ties: the first ones), order kept;
    returns m."""
    if m == 0:
        return 0
    cut = np.partition(mags[:c], c - m)[c - m]
    ties = m
    for t in range(c):
        if mags[t] > cut:
            ties -= 1
    kept = 0
    for t in range(c):
        if mags[t] > cut or (mags[t] == cut and ties > 0):
            if mags[t] == cut:
                ties -= 1
            items[kept] = items[t]
            kept += 1
    return kept


def incomplete_cholesky(C: sp.csr_matrix, diag: np.ndarray, beta: float, k: int | None
                        ) -> sp.csr_matrix | int:
    """L (CSR, lower, rows cut to the diagonal and k - 1 largest others; None: all) with L L^T ~ beta D - P for
    P's strict lower triangle ``C`` and diagonal ``diag``; or the row where beta D - P stopped being positive
    definite."""
    n = C.shape[0]
    keep = n if k is None else max(int(k) - 1, 0)
    room = min(C.nnz, n * keep) + n
    l_indptr = np.zeros(n + 1, dtype=np.int64)
    l_cols = np.empty(room, dtype=np.int32)
    l_vals = np.empty(room, dtype=np.float64)
    broke = _factor_rows(C.indptr.astype(np.int64), C.indices.astype(np.int64), C.data.astype(np.float64),
                         np.asarray(diag, dtype=np.float64), float(beta), keep, l_indptr, l_cols, l_vals)
    if broke >= 0:
        return int(broke)
    nnz = l_indptr[-1]
    return sp.csr_matrix((l_vals[:nnz], l_cols[:nnz], l_indptr), shape=(n, n))


@nb.njit(cache=True)
def _factor_rows(c_indptr, c_cols, c_vals, diag, beta, keep, l_indptr, l_cols, l_vals):
    """Rows of L in order (see ``incomplete_cholesky``), each stored with its diagonal last; returns -1, or the
    row whose pivot (beta - 1) P_ii - sum of its squares was not positive."""
    n = diag.shape[0]
    y = np.zeros(n, dtype=np.float64)  # row i so far, by column
    pivot = np.empty(n, dtype=np.float64)
    cols = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.float64)
    mags = np.empty(n, dtype=np.float64)
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = 0
        squares = 0.0
        for p in range(c_indptr[i], c_indptr[i + 1]):
            j = c_cols[p]
            s = -c_vals[p]  # (beta D - P)[i, j] off the diagonal
            for q in range(l_indptr[j], l_indptr[j + 1] - 1):  # row j without its diagonal (stored last)
                s -= l_vals[q] * y[l_cols[q]]
            v = s / pivot[j]
            y[j] = v
            squares += v * v
            cols[c] = j
            vals[c] = v
            mags[c] = abs(v)
            c += 1
        d2 = (beta - 1.0) * diag[i] - squares
        for t in range(c):
            y[cols[t]] = 0.0
        if not d2 > 0.0:
            return i
        pivot[i] = np.sqrt(d2)
        if c > keep:
            for t in range(c):
                order[t] = t
            c = _keep_largest(order, mags, c, keep)
            for t in range(c):
                cols[t] = cols[order[t]]
                vals[t] = vals[order[t]]
        w = l_indptr[i]
        for t in range(c):
            l_cols[w] = cols[t]
            l_vals[w] = vals[t]
            w += 1
        l_cols[w] = i
        l_vals[w] = pivot[i]
        l_indptr[i + 1] = w + 1
    return -1
