"""Dense low-rank models served by FAISS: PureSVD and the rank-d counterpart of EASE / Cholesky.

Both start from a truncated SVD of X (X ~ U S W^T, W: items x d), computed by a
seeded randomized range finder with power iterations, so X^T X is never formed.

- PureSVD: score(x, i) = <x W, W_i>.
- Rank-d counterpart of the full-rank model the sparse Cholesky index serves. With
  G = X^T X = W S^2 W^T (+ the rest of the spectrum), P = (G + l2 I)^-1 and for an
  item outside the history (every diagonal term only scores history items, which
  are masked)

      score_full(x, i) = -(x P)_i / P_ii = (x W f(S) W^T)_i / P_ii + (terms of the discarded spectrum),
      f(s) = s^2 / (s^2 + l2) / l2.

  Keeping the top d singular directions gives E = V = W f(S)^(1/2) and the same
  priors 1 / P_ii as the Cholesky model, so the comparison isolates "sparse, full
  rank" from "dense, rank d" with everything else equal.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..data import popularity
from ..errors import DataError
from ..factors import DenseFactors
from ..progress import stage
from .base import MEMORY_LIMIT, SEED, Model, dims_param, fit_function, l2_param
from .params import NON_NEGATIVE, Param


def truncated_svd(X: sp.spmatrix, dims: int, n_iter: int = 6, oversample: int = 16,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top ``dims`` singular values S and right singular vectors W (items x dims) of X.

    Randomized range finder (Halko, Martinsson & Tropp 2011) with ``n_iter`` power
    iterations and QR re-orthonormalisation; deterministic for a given seed.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    n_users, n_items = X.shape
    if not 1 <= dims <= min(n_users, n_items):
        raise DataError(f"dims must be between 1 and min(users, items) = {min(n_users, n_items)}, got {dims}")
    width = min(dims + oversample, n_items, n_users)
    rng = np.random.default_rng(seed)
    Xt = sp.csr_matrix(X.T)
    Q = rng.standard_normal((n_items, width), dtype=np.float32)
    Q, _ = np.linalg.qr(X @ Q)
    for _ in range(n_iter):
        Q, _ = np.linalg.qr(Xt @ Q)
        Q, _ = np.linalg.qr(X @ Q)
    B = np.asarray((Xt @ Q).T)  # width x items: X ~ Q B
    _, S, Wt = np.linalg.svd(B, full_matrices=False)
    return S[:dims].astype(np.float32), np.ascontiguousarray(Wt[:dims].T, dtype=np.float32)


N_ITER = Param("n_iter", int, 6, "power iterations of the randomized SVD", NON_NEGATIVE)


class PureSVD(Model):
    """PureSVD (Cremonesi et al. 2010): E = V = W, the top right singular vectors of X."""

    name = "puresvd"
    dense = True
    params = (dims_param(256), N_ITER, SEED)

    def _fit(self, X, item_ids) -> DenseFactors:
        t0 = time.perf_counter()
        S, W = _svd(X, self)
        params = {"dims": int(self.dims), "n_iter": int(self.n_iter), "seed": int(self.seed),
                  "singular_values_top": float(S[0]), "fit_seconds": round(time.perf_counter() - t0, 3)}
        return DenseFactors(encoder=W, embeddings=W, priors=np.ones(X.shape[1], dtype=np.float32),
                            item_ids=item_ids, model=self.name, params=params, popularity=popularity(X))


class CholeskyLowRank(Model):
    """Rank-d counterpart of the Cholesky / EASE model: E = V = W f(S)^(1/2), priors 1 / diag(P).

    diag(P) is exact (the dense LAPACK route of the Cholesky model, with its memory
    check), so item scaling matches the sparse index; only the rank differs.
    """

    name = "chol-lowrank"
    dense = True
    params = (dims_param(256), l2_param(200.0), N_ITER, SEED, MEMORY_LIMIT)

    def _fit(self, X, item_ids) -> DenseFactors:
        from .cholesky import gram_inverse

        l2 = self.l2
        t0 = time.perf_counter()
        S, W = _svd(X, self)
        buf, diag = gram_inverse(X, l2, self.memory_limit)
        del buf
        s2 = S.astype(np.float64) ** 2
        scale = np.sqrt(s2 / (s2 + l2) / l2).astype(np.float32)
        V = W * scale[None, :]
        priors = np.where(diag > 0, 1.0 / np.maximum(diag, np.finfo(np.float32).tiny), 0.0).astype(np.float32)
        params = {"dims": int(self.dims), "l2": float(l2), "n_iter": int(self.n_iter), "seed": int(self.seed),
                  "fit_seconds": round(time.perf_counter() - t0, 3)}
        return DenseFactors(encoder=V, embeddings=V, priors=priors, item_ids=item_ids, model=self.name,
                            params=params, popularity=popularity(X))


def _svd(X, model: Model) -> tuple[np.ndarray, np.ndarray]:
    with stage(f"truncated SVD of X ({X.shape[0]:,} x {X.shape[1]:,}), d={model.dims}"):
        return truncated_svd(X, model.dims, n_iter=model.n_iter, seed=model.seed)


fit_puresvd = fit_function(PureSVD, "fit_puresvd")
fit_cholesky_lowrank = fit_function(CholeskyLowRank, "fit_cholesky_lowrank")
