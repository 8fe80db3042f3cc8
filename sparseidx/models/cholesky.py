"""Cholesky embeddings (Van Balen & Goethals, WWW'21): L with L L^T = beta D_P - P.

P = (X^T X + l2 I)^-1 over items put in a chosen order; E = V = L with rows pruned
to k non-zeros, priors = 1 / diag(P). For items outside the history the scores
equal dense EASE's (beta only changes the diagonal). The dense route keeps one
N x N buffer (float32, or the paper's float64 with ``dtype="float64"``) and works in
place with LAPACK (potrf / potri / potrf). The sparse route (``_sparse_cholesky``)
factors SANSA's sparse approximate inverse instead, in memory that grows with
non-zeros; ``route="auto"`` takes the dense one when its buffers fit the budget.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..data import as_matrix, popularity
from ..errors import DataError, SparseIdxError
from ..factors import Factors
from ..progress import log, stage
from . import _dense_kernels as kern
from ._lapack import cholesky_lower, inverse_from_cholesky_lower
from ._memory import check_dense
from ._sparse_cholesky import incomplete_cholesky, lower_rows
from .base import MEMORY_LIMIT, Model, fit_function, l2_param
from .params import AT_LEAST_1, POSITIVE, OneOf, Param, ParamError, Range
from .sansa import FACTORIZERS, Sansa

ORDERS = ("popularity", "cooccurrence", "none")
DTYPES = ("float32", "float64")
ROUTES = ("auto", "dense", "sparse")
MAX_BETA = 1e6
DEFAULT_BUDGET_GIB = 8.0


def dense_bytes(n: int, dtype: str = "float32") -> int:
    """Peak bytes of the dense route on n items: the N x N buffer plus G and its copies (see ``_check_memory``)."""
    return int(n * n * 4 * _dense_buffers(dtype))


def _dense_buffers(dtype: str) -> float:
    # the N x N buffer plus G (8 B per non-zero) and scatter_gram's int64 / float32 copies (12 B): 1.5 float32
    # buffers when about 10% of G is non-zero, more for denser Gram matrices; float64 doubles the buffer
    return 1.5 if dtype == "float32" else 2.5


def choose_route(n: int, route: str, budget_gib: float, dtype: str = "float32") -> tuple[str, str]:
    """(route, why): the user's choice, or for 'auto' the dense route when its buffers fit ``budget_gib``.

    The decision depends on the catalogue's size and the budget only, never on the machine.
    """
    if route != "auto":
        return route, "chosen by the user"
    need = dense_bytes(n, dtype) / 2**30
    if need > budget_gib:
        return "sparse", (f"the dense route's {n:,} x {n:,} buffers would take {need:.1f} GiB, over the memory "
                          f"budget of {budget_gib:g} GiB (--memory-budget-gib)")
    return "dense", (f"the dense route's {n:,} x {n:,} buffers take {need:.1f} GiB, within the memory budget of "
                     f"{budget_gib:g} GiB (--memory-budget-gib)")


def item_order(X: sp.spmatrix, order: str) -> np.ndarray:
    """Permutation of items for ``order`` in ORDERS: most popular first, most co-occurring first, or as given."""
    G = (sp.csr_matrix(X).T @ sp.csr_matrix(X)).tocsr() if order == "cooccurrence" else None
    return gram_order(G, popularity(X) if order == "popularity" else None, order, X.shape[1])


def gram_order(G: sp.spmatrix | None, counts: np.ndarray | None, order: str, n: int) -> np.ndarray:
    """``item_order`` from what it needs: item ``counts`` for "popularity", the Gram matrix G for "cooccurrence"."""
    if order == "none":
        return np.arange(n, dtype=np.int64)
    key = counts if order == "popularity" else np.diff(sp.csr_matrix(G).indptr)  # Cholesky refuses other orders
    return np.argsort(-key, kind="stable").astype(np.int64)


def gram_inverse(X: sp.spmatrix, l2: float, memory_limit: int | None = None,
                 dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """P = (X^T X + l2 I)^-1 in ``dtype`` by LAPACK Cholesky inversion, in one buffer (l2 > 0).

    Returns (buf, diag): ``buf`` is C-ordered N x N with P in its lower triangle
    (the strict upper triangle holds garbage), ``diag`` = diag(P).
    """
    X = sp.csr_matrix(X, dtype=dtype)
    _check_memory(X.shape[1], memory_limit, dtype)  # before forming G
    return invert_gram(_gram(X), l2, memory_limit, dtype)  # G is held by invert_gram alone, which frees it early


def _gram(X: sp.csr_matrix) -> sp.csr_matrix:
    with stage(f"Gram matrix of {X.shape[0]:,} users x {X.shape[1]:,} items"):
        return (X.T @ X).tocsr()


def _check_memory(n: int, memory_limit: int | None, dtype: str = "float32") -> None:
    check_dense(n, "the dense Cholesky/EASE route", "--route sparse", n_buffers=_dense_buffers(dtype),
                limit=memory_limit)


def invert_gram(G: sp.spmatrix, l2: float, memory_limit: int | None = None,
                dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``gram_inverse`` of a precomputed Gram matrix G = X^T X (items x items, sparse)."""
    G = sp.csr_matrix(G)
    n = G.shape[0]
    _check_memory(n, memory_limit, dtype)
    with stage(f"dense X^T X + l2 I of {n:,} items ({dtype})"):
        G.sort_indices()
        buf = np.zeros((n, n), dtype=dtype)
        kern.scatter_gram(buf, G.indptr.astype(np.int64), G.indices.astype(np.int64),
                          G.data.astype(dtype), buf.dtype.type(l2))
        del G
    # in place, without holding the GIL (the stage's heartbeat runs meanwhile)
    with stage("Cholesky inversion (potrf + potri)"):
        info = cholesky_lower(buf)
        if info != 0:
            raise SparseIdxError(f"X^T X + l2 I is not positive definite in {dtype} (LAPACK info={info}); "
                                 "increase --l2")
        info = inverse_from_cholesky_lower(buf)
        if info != 0:
            raise SparseIdxError(f"inversion failed (LAPACK potri info={info}); increase --l2")
    return buf, np.ascontiguousarray(np.diagonal(buf)).copy()


class Cholesky(Model):
    """Cholesky embeddings: L with L L^T = beta D_P - P, rows pruned to ``k`` non-zeros.

    The beta used, the order and the timings are recorded in ``Factors.params``.
    """

    name = "chol"
    params = (
        l2_param(200.0),
        Param("beta", float, "auto", "beta of beta*D_P - P; 'auto' starts at 2 and raises it by 1.5x until "
              "positive definite", Range(1, low_open=True), also=("auto",)),
        Param("k", int, 200, "non-zeros kept per embedding row (None, from Python, keeps all)", AT_LEAST_1,
              also=(None,)),
        Param("order", str, "popularity", "item order, which decides which rows can hold many non-zeros",
              OneOf(ORDERS)),
        Param("dtype", str, "float32", "floating-point type of the dense inversion and factorization: float32 "
              "(half the memory) or float64 (the paper's); the embeddings are stored in float32 either way",
              OneOf(DTYPES)),
        Param("route", str, "auto", "dense: invert the N x N matrix (exact, memory N^2); sparse: factor SANSA's "
              "sparse approximate inverse (memory grows with non-zeros); auto: dense when its buffers fit "
              "memory_budget_gib", OneOf(ROUTES)),
        Param("memory_budget_gib", float, DEFAULT_BUDGET_GIB, "GiB the exact parts may take: the dense route's "
              "buffers for route 'auto', the exact CHOLMOD factor for the sparse route's factorizer 'auto'; a "
              "fixed figure, not the machine's free memory", POSITIVE),
        Param("inverse_nnz_per_item", int, 200, "sparse route: non-zeros per item of the approximate inverse "
              "(SANSA's nnz_per_item)", AT_LEAST_1),
        Param("factorizer", str, "auto", "sparse route: SANSA's factor of X^T X + l2 I, exact CHOLMOD or "
              "incomplete ('auto': cholmod when it fits memory_budget_gib)", OneOf(FACTORIZERS)),
        Param("candidates", int, None, "sparse route: entries of each row of the approximate inverse the "
              "factorization uses (default: k; all when k is None)", AT_LEAST_1, also=(None,)),
        MEMORY_LIMIT,
    )

    def _check_together(self) -> None:
        if self.route == "sparse" and self.order == "cooccurrence":
            raise ParamError("order", "order 'cooccurrence' needs the Gram matrix, which the sparse route never "
                                      "forms: use order 'popularity' (--order popularity) or route dense")

    def _fit(self, X, item_ids) -> Factors:
        t0 = time.perf_counter()
        route, why = choose_route(X.shape[1], self.route, self.memory_budget_gib, self.dtype)
        log.info("Cholesky route: %s (%s)", route, why)
        if route == "sparse" and self.order == "cooccurrence":
            raise SparseIdxError(f"{why}, and the sparse route cannot use order 'cooccurrence': use --order "
                                 "popularity, or --route dense with a larger --memory-budget-gib")
        perm = item_order(X, self.order)
        if route == "sparse":
            return self._sparse(X, perm, item_ids, {"route": route, "route_reason": why}, t0)
        buf, diag = gram_inverse(X[:, perm], self.l2, self.memory_limit, self.dtype)
        return self._factor(buf, diag, perm, popularity(X), item_ids, t0, {"route": route, "route_reason": why})

    def _sparse(self, X, perm, item_ids, route: dict, t0) -> Factors:
        """The sparse route: SANSA's approximate inverse, then an incomplete factor of beta D_P~ - P~."""
        inverse = Sansa(l2=self.l2, factorizer=self.factorizer, memory_budget_gib=self.memory_budget_gib,
                        nnz_per_item=min(self.inverse_nnz_per_item, X.shape[1]))
        W, D, inverse_params = inverse.approximate_inverse(sp.csr_matrix(X, dtype=np.float64))
        candidates = self.k if self.candidates is None else self.candidates
        with stage(f"rows of the approximate inverse, {candidates or 'all'} entries kept per item"):
            C, diag = lower_rows(W, D, perm, candidates)
        del W
        if np.any(diag <= 0):
            raise SparseIdxError("the approximate inverse has a non-positive diagonal; raise "
                                 "--inverse-nnz-per-item or --l2")

        def attempt(beta):
            with stage(f"incomplete Cholesky of beta D_P - P (beta={beta:g}, {C.nnz:,} entries of P)"):
                L = incomplete_cholesky(C, diag, beta, self.k)
            return (None, f"at row {L}") if isinstance(L, int) else (L, "")

        L, beta = self._first_definite(attempt)
        inverse_params = {f"inverse_{key}": value for key, value in inverse_params.items()}
        route = {**route, **inverse_params, "candidates": candidates,
                 "nnz_inverse_rows": int(C.nnz)}
        return self._factors(L, diag, perm, beta, popularity(X), item_ids, t0, route)

    def fit_gram(self, G, counts, item_ids=None) -> Cholesky:
        """Train from the Gram matrix G = X^T X (items x items, sparse) and users per item (``counts``).

        The factors equal ``fit(X)``'s; G may be summed over partitions of X
        (``sparseidx.distributed.gram``). Item ids default to 0..n-1. Only the dense route takes a Gram matrix.
        """
        if self.route == "sparse":
            raise SparseIdxError("the sparse route fits from the interactions X, not from a Gram matrix: call fit(X), "
                                 "or use route dense")
        t0 = time.perf_counter()
        G = sp.csr_matrix(G, dtype=np.float32)
        counts = np.asarray(counts, dtype=np.int64)
        n = G.shape[0]
        item_ids = np.arange(n, dtype=np.int64) if item_ids is None else np.asarray(item_ids)
        if G.shape != (n, n) or counts.shape != (n,) or len(item_ids) != n:
            raise DataError(f"a Gram matrix of shape {G.shape} needs {G.shape[0]} item counts and ids, "
                            f"got {counts.shape[0] if counts.ndim else 0} and {len(item_ids)}")
        perm = gram_order(G, counts, self.order, n)
        buf, diag = invert_gram(G[perm][:, perm], self.l2, self.memory_limit, self.dtype)
        self.factors_ = self._factor(buf, diag, perm, counts, item_ids, t0, {
            "route": "dense", "route_reason": "fitted from a Gram matrix, which only the dense route takes"})
        return self

    def _factor(self, buf, diag, perm, counts, item_ids, t0, route: dict) -> Factors:
        """Factors from P = (X^T X + l2 I)^-1 of the permuted items (``buf``, ``diag``; see ``gram_inverse``)."""
        one = buf.dtype.type(1.0)
        kern.mirror_lower(buf, one)  # keep P in the upper triangle to retry with a larger beta

        def attempt(beta):
            kern.mirror_lower(buf.T, -one)  # the lower triangle: beta D_P - P
            np.fill_diagonal(buf, (beta - 1.0) * diag)
            with stage(f"Cholesky of beta D_P - P (beta={beta:g})"):
                info = cholesky_lower(buf)
            return (buf if info == 0 else None), f"(LAPACK info={info})"

        _, beta = self._first_definite(attempt)
        with stage(f"pruning rows to k={self.k}"):
            L = _lower_rows_to_csr(buf, self.k)
        return self._factors(L, diag, perm, beta, counts, item_ids, t0, route)

    def _first_definite(self, attempt):
        """(result, beta) of the first ``attempt(beta)`` that factors beta D_P - P: at the given beta, or for
        'auto' from 2 up by 1.5x. ``attempt`` returns (result, where), result None when the factorization
        broke down (``where`` says where). Raises when beta may not grow."""
        auto = self.beta == "auto"
        beta = 2.0 if auto else float(self.beta)
        while True:
            result, where = attempt(beta)
            if result is not None:
                return result, beta
            if not auto:
                raise SparseIdxError(f"beta D_P - P is not positive definite at beta={beta:g}; "
                                     "use --beta auto or a larger value")
            if beta * 1.5 > MAX_BETA:
                raise SparseIdxError(f"beta D_P - P stayed indefinite up to beta={beta:g}; increase --l2")
            log.info("beta=%g is too small %s, retrying with %g", beta, where, beta * 1.5)
            beta *= 1.5

    def _factors(self, L, diag, perm, beta, counts, item_ids, t0, route: dict) -> Factors:
        """Factors from L (rows in the fitted order) and diag(P): rows back to the caller's item order."""
        inv_perm = np.empty_like(perm)
        inv_perm[perm] = np.arange(len(perm))
        L = L[inv_perm]  # rows back to the caller's item order; dimensions stay in the fitted order
        priors = np.zeros(len(perm), dtype=np.float32)
        priors[perm] = np.where(diag > 0, 1.0 / np.maximum(diag, np.finfo(np.float32).tiny), 0.0)
        params = {"l2": float(self.l2), "beta": float(beta), "beta_auto": self.beta == "auto", "k": self.k,
                  "order": self.order, "dtype": self.dtype, **route,
                  "fit_seconds": round(time.perf_counter() - t0, 3)}
        return Factors(encoder=L, embeddings=L, priors=priors, item_ids=item_ids, model=self.name,
                       params=params, popularity=counts)


fit_cholesky = fit_function(Cholesky, "fit_cholesky")


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
    kern.mirror_lower(buf, buf.dtype.type(1.0))
    buf /= -diag[None, :]
    np.fill_diagonal(buf, 0.0)
    return buf
