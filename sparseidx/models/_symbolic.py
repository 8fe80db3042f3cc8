"""Symbolic Cholesky analysis: the number of non-zeros of the exact factor, without computing it.

Elimination tree by Liu's algorithm with path compression, then each row's pattern
as the union of etree paths from the row's entries (one marker pass): the cost is
O(nnz(L)) integer steps and O(n) memory besides the pattern of A.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp


@nb.njit(cache=True)
def _factor_nnz(n, indptr, indices):
    """nnz(L) for the pattern of a symmetric matrix given as CSC (both triangles or the upper one)."""
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            r = indices[p]
            if r >= j:
                continue
            while ancestor[r] != -1 and ancestor[r] != j:
                t = ancestor[r]
                ancestor[r] = j
                r = t
            if ancestor[r] == -1:
                ancestor[r] = j
                parent[r] = j
    mark = np.full(n, -1, dtype=np.int64)
    total = 0
    for j in range(n):
        mark[j] = j
        total += 1
        for p in range(indptr[j], indptr[j + 1]):
            k = indices[p]
            if k >= j:
                continue
            while mark[k] != j:
                mark[k] = j
                total += 1
                k = parent[k]
    return total


def cholesky_nnz(X: sp.spmatrix, perm: np.ndarray) -> int:
    """Non-zeros of the exact Cholesky factor of P (X^T X + l2 I) P^T for the ordering ``perm``."""
    B = sp.csc_matrix(X, dtype=np.float32)[:, perm]
    B.data[:] = 1.0
    G = sp.csc_matrix(B.T @ B)
    G.sort_indices()
    return int(_factor_nnz(G.shape[0], G.indptr.astype(np.int64), G.indices.astype(np.int64)))
