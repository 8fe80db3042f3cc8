"""Cholesky embeddings (Van Balen & Goethals, WWW'21): L with L L^T = beta D_P - P.

P = (X^T X + l2 I)^-1 over items put in a chosen order; E = V = L with rows pruned
to k non-zeros, priors = 1 / diag(P). For items outside the history the scores
equal dense EASE's (beta only changes the diagonal). The dense route keeps one
N x N float32 buffer and works in place with LAPACK (potrf / potri / potrf).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..data import as_matrix, check_finite, popularity
from ..errors import DataError, SparseIdxError
from ..factors import Factors
from ..progress import log, stage
from . import _dense_kernels as kern
from ._lapack import cholesky_lower, inverse_from_cholesky_lower
from ._memory import check_dense

ORDERS = ("popularity", "cooccurrence", "none")
MAX_BETA = 1e6


def item_order(X: sp.spmatrix, order: str) -> np.ndarray:
    """Permutation of items: most popular first, most co-occurring first, or as given."""
    n = X.shape[1]
    if order == "none":
        return np.arange(n, dtype=np.int64)
    if order == "popularity":
        key = popularity(X)
    elif order == "cooccurrence":
        G = (sp.csr_matrix(X).T @ sp.csr_matrix(X)).tocsr()
        key = np.diff(G.indptr)
    else:
        raise DataError(f"unknown item order {order!r}; choose one of {', '.join(ORDERS)}")
    return np.argsort(-key, kind="stable").astype(np.int64)


def gram_inverse(X: sp.spmatrix, l2: float, memory_limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """P = (X^T X + l2 I)^-1 in float32 by LAPACK Cholesky inversion, in one buffer.

    Returns (buf, diag): ``buf`` is C-ordered N x N with P in its lower triangle
    (the strict upper triangle holds garbage), ``diag`` = diag(P).
    """
    if l2 <= 0:
        raise DataError(f"l2 must be positive, got {l2}")
    X = sp.csr_matrix(X, dtype=np.float32)
    n = X.shape[1]
    # peak: the N x N buffer plus G (8 B per non-zero) and scatter_gram's int64 / float32 copies (12 B):
    # 1.5 buffers when about 10% of G is non-zero, more for denser Gram matrices
    check_dense(n, "the dense Cholesky/EASE route", "--model sansa", n_buffers=1.5, limit=memory_limit)
    with stage(f"Gram matrix of {X.shape[0]:,} users x {n:,} items"):
        G = (X.T @ X).tocsr()
        G.sort_indices()
        buf = np.zeros((n, n), dtype=np.float32)
        kern.scatter_gram(buf, G.indptr.astype(np.int64), G.indices.astype(np.int64),
                          G.data.astype(np.float32), np.float32(l2))
        del G
    # in place, without holding the GIL (the stage's heartbeat runs meanwhile)
    with stage("Cholesky inversion (potrf + potri)"):
        info = cholesky_lower(buf)
        if info != 0:
            raise SparseIdxError(f"X^T X + l2 I is not positive definite in float32 (LAPACK info={info}); "
                                 "increase --l2")
        info = inverse_from_cholesky_lower(buf)
        if info != 0:
            raise SparseIdxError(f"inversion failed (LAPACK potri info={info}); increase --l2")
    return buf, np.ascontiguousarray(np.diagonal(buf)).copy()


def fit_cholesky(X, l2: float = 200.0, beta: float | str = "auto", k: int | None = 200,
                 order: str = "popularity", item_ids: np.ndarray | None = None,
                 memory_limit: int | None = None) -> Factors:
    """Train Cholesky embeddings from interactions (Interactions or a users x items matrix).

    ``beta``: a number > 1, or "auto" (start at 2, raise by 1.5x until beta D_P - P
    is positive definite). ``k``: non-zeros kept per embedding row (None keeps all).
    ``order``: "popularity", "cooccurrence" or "none". The beta used, the order and
    the timings are recorded in ``Factors.params``.
    """
    check_finite(l2=l2, beta=None if beta == "auto" else beta)
    X, item_ids = as_matrix(X, item_ids)
    if order not in ORDERS:
        raise DataError(f"unknown item order {order!r}; choose one of {', '.join(ORDERS)}")
    if k is not None and k < 1:
        raise DataError(f"k must be at least 1 (or None for no pruning), got {k}")
    auto = beta == "auto"
    beta = 2.0 if auto else float(beta)
    if beta <= 1.0:
        raise DataError(f"beta must be greater than 1 for beta D_P - P to be positive definite, got {beta}")
    t0 = time.perf_counter()
    perm = item_order(X, order)
    buf, diag = gram_inverse(X[:, perm], l2, memory_limit)
    kern.mirror_lower_to_upper(buf)  # keep P in the upper triangle to retry with a larger beta
    while True:
        kern.lower_from_upper_shifted(buf, diag, np.float32(beta))
        with stage(f"Cholesky of beta D_P - P (beta={beta:g})"):
            info = cholesky_lower(buf)
        if info == 0:
            break
        if not auto:
            raise SparseIdxError(f"beta D_P - P is not positive definite at beta={beta:g}; "
                                 "use --beta auto or a larger value")
        if beta * 1.5 > MAX_BETA:
            raise SparseIdxError(f"beta D_P - P stayed indefinite up to beta={beta:g}; increase --l2")
        log.info("beta=%g is too small (LAPACK info=%d), retrying with %g", beta, info, beta * 1.5)
        beta *= 1.5
    with stage(f"pruning rows to k={k}"):
        L = _lower_rows_to_csr(buf, k)
    del buf
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(len(perm))
    L = L[inv_perm]  # rows back to the caller's item order; dimensions stay in the fitted order
    priors = np.zeros(len(perm), dtype=np.float32)
    priors[perm] = np.where(diag > 0, 1.0 / np.maximum(diag, np.finfo(np.float32).tiny), 0.0)
    params = {"l2": float(l2), "beta": float(beta), "beta_auto": auto, "k": k, "order": order,
              "fit_seconds": round(time.perf_counter() - t0, 3)}
    return Factors(encoder=L, embeddings=L, priors=priors, item_ids=item_ids, model="chol",
                   params=params, popularity=popularity(X))


def _lower_rows_to_csr(buf: np.ndarray, k: int | None) -> sp.csr_matrix:
    n = buf.shape[0]
    nnz = kern.count_row_nonzeros(buf)
    keep = nnz if k is None else np.minimum(nnz, k)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    kern.prune_lower_rows(buf, np.int64(n if k is None else k), indptr, indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def ease_weights(X, l2: float, memory_limit: int | None = None) -> np.ndarray:
    """Dense EASE weights B = I - P D_P^-1 with zero diagonal (the accuracy reference; N x N)."""
    X, _ = as_matrix(X, None)
    buf, diag = gram_inverse(X, l2, memory_limit)
    kern.mirror_lower_to_upper(buf)
    buf /= -diag[None, :]
    np.fill_diagonal(buf, 0.0)
    return buf
