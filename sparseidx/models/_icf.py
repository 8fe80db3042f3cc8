"""Incomplete Cholesky factorization with a per-column budget (numba).

Left-looking, column by column (Lin & More, 1999): column j of L is A[j:, j] minus
the contributions of earlier columns with a non-zero in row j, found through
per-row linked lists; then only the largest off-diagonal entries are kept, within
a per-column budget: the average ``budget`` per column, plus whatever earlier
columns left unused (sparse early columns leave room for the dense late ones that
a fill-reducing order puts last). Memory is bounded by n x (budget + 1) entries of L plus O(n) work arrays,
never by n^2. A non-positive pivot means breakdown: the caller retries with a
larger diagonal shift.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ._gram import gram_lower


@nb.njit(cache=True)
def _icf(n, a_indptr, a_rows, a_vals, shift, budget, l_indptr, l_rows, l_vals):
    """Factor the lower triangle of A (CSC, rows sorted) into L; returns nnz(L), or -1 - j on breakdown at j."""
    w = np.zeros(n, dtype=np.float64)
    mark = np.zeros(n, dtype=np.uint8)
    touched = np.empty(n, dtype=np.int64)
    head = np.full(n, -1, dtype=np.int64)  # first column whose next entry lies in this row
    link = np.full(n, -1, dtype=np.int64)
    next_pos = np.zeros(n, dtype=np.int64)
    total = budget * n  # off-diagonal entries allowed in all
    used = 0
    nnz = 0
    for j in range(n):
        nt = 0
        for p in range(a_indptr[j], a_indptr[j + 1]):
            i = a_rows[p]
            if i < j:
                continue
            w[i] += a_vals[p]
            if mark[i] == 0:
                mark[i] = 1
                touched[nt] = i
                nt += 1
        if mark[j] == 0:
            mark[j] = 1
            touched[nt] = j
            nt += 1
        w[j] += shift
        k = head[j]
        while k != -1:
            next_k = link[k]
            pos = next_pos[k]
            ljk = l_vals[pos]
            for q in range(pos, l_indptr[k + 1]):
                i = l_rows[q]
                w[i] -= l_vals[q] * ljk
                if mark[i] == 0:
                    mark[i] = 1
                    touched[nt] = i
                    nt += 1
            pos += 1
            if pos < l_indptr[k + 1]:
                next_pos[k] = pos
                r = l_rows[pos]
                link[k] = head[r]
                head[r] = k
            k = next_k
        pivot = w[j]
        if not pivot > 0.0:
            return -1 - j
        d = np.sqrt(pivot)
        # off-diagonal candidates, the largest ``budget`` of them kept
        cand = np.empty(nt, dtype=np.int64)
        nc = 0
        for t in range(nt):
            i = touched[t]
            if i > j and w[i] != 0.0:
                cand[nc] = i
                nc += 1
        cand = cand[:nc]
        allowed = (total - used) // (n - j)
        if nc > allowed:
            mags = np.empty(nc, dtype=np.float64)
            for t in range(nc):
                mags[t] = -abs(w[cand[t]])
            cand = cand[np.argsort(mags, kind="mergesort")[:allowed]]
        cand = np.sort(cand)
        used += cand.shape[0]
        l_rows[nnz] = j
        l_vals[nnz] = d
        nnz += 1
        for t in range(cand.shape[0]):
            l_rows[nnz] = cand[t]
            l_vals[nnz] = w[cand[t]] / d
            nnz += 1
        l_indptr[j + 1] = nnz
        for t in range(nt):
            i = touched[t]
            w[i] = 0.0
            mark[i] = 0
        if l_indptr[j + 1] - l_indptr[j] > 1:
            pos = l_indptr[j] + 1
            next_pos[j] = pos
            r = l_rows[pos]
            link[j] = head[r]
            head[r] = j
    return nnz


@nb.njit(cache=True)
def _scale_in_place(indptr, rows, vals, c):
    """diag(c) G diag(c) off the diagonal and 1 on it, over the lower triangle of G (sorted rows)."""
    n = indptr.shape[0] - 1
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = rows[p]
            vals[p] = 1.0 if i == j else vals[p] * (c[i] * c[j])


def scaled_gramian(X: sp.spmatrix, l2: float) -> tuple[sp.csc_matrix, np.ndarray]:
    """(A, s): the unit-diagonal lower triangle A = S (D^-1 G D^-1 + l2 I) S of G = X^T X, and s = diag(S).

    D scales item j by ||G_j||^(1/2) (1 for items nobody touched), as in the paper's
    ICF route; S = diag(D^-1 G D^-1 + l2 I)^(-1/2) gives the unit diagonal. Memory: the
    lower triangle of G (float32 values), scaled in place (``_gram``).
    """
    G, norms_sq = gram_lower(X)
    n = G.shape[0]
    da = np.sqrt(np.sqrt(norms_sq))
    da[da == 0] = 1.0
    has_diag = np.diff(G.indptr) > 0  # a touched item's column starts with its diagonal (rows sorted, >= j)
    diag = np.zeros(n, dtype=np.float64)
    diag[has_diag] = G.data[G.indptr[:-1][has_diag]]
    s = 1.0 / np.sqrt(diag / da**2 + l2)
    _scale_in_place(G.indptr, G.indices, G.data, s / da)
    if not has_diag.all():  # items nobody touched: a unit diagonal of their own
        G = sp.csc_matrix(G + sp.diags((~has_diag).astype(np.float32), format="csc"))
        G.sort_indices()
    return G, s


def incomplete_cholesky(A: sp.spmatrix, budget: int, shift: float = 0.0) -> sp.csc_matrix | int:
    """L (CSC, lower, positive diagonal) with L L^T ~ A + shift I keeping about ``budget`` off-diagonals per column.

    Returns the failing column index (an int) instead when a pivot is not positive.
    """
    n = A.shape[0]
    if not (sp.isspmatrix_csc(A) and A.dtype in (np.float32, np.float64)):
        A = sp.csc_matrix(A, dtype=np.float64)
    A.sort_indices()  # rows above the diagonal, if any, are skipped by the kernel
    cap = n * (min(budget, max(n - 1, 0)) + 1)
    l_indptr = np.zeros(n + 1, dtype=np.int64)
    l_rows = np.empty(cap, dtype=np.int64)
    l_vals = np.empty(cap, dtype=np.float64)
    nnz = _icf(n, A.indptr, A.indices, A.data, float(shift), int(budget),
               l_indptr, l_rows, l_vals)
    if nnz < 0:
        return int(-1 - nnz)
    return sp.csc_matrix((l_vals[:nnz], l_rows[:nnz], l_indptr), shape=(n, n))
