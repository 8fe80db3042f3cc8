"""SANSA (Spisak et al., RecSys'23): a sparse approximate inverse of X^T X + l2 I, in the one shape.

1. A fill-reducing ordering p of A = X^T X + l2 I (COLAMD, from CHOLMOD's analysis of X^T).
2. A sparse factor L L^T ~ P A P^T: the exact CHOLMOD factor computed from X without
   forming X^T X, then sparsified globally to the target density ("cholmod"), or an
   incomplete Cholesky with a per-column budget, restarted with a larger shift on
   breakdown ("icf"). As in the paper's ICF route, the ICF model is fitted on X with
   columns scaled by ||(X^T X)_j||^(-1/2) (then applied to unscaled histories).
3. L D L^T with unit L; K ~ L^-1 by UMR (``_umr``); W = K P, so A^-1 ~ W^T D^-1 W.
4. EASE's scores for an unseen item are -(x A^-1)_i / (A^-1)_ii, hence the one shape
   with encoder E = W^T, item embeddings V = -(D^-1 W)^T scaled per item by
   1 / diag(W^T D^-1 W) (the paper's decoder scaling), priors 1.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..data import as_matrix, check_finite, popularity
from ..errors import DataError, SparseIdxError
from ..factors import Factors
from ..openblas import import_pinned
from ..progress import log, stage
from ._icf import incomplete_cholesky, scaled_gramian
from ._symbolic import cholesky_nnz
from ._umr import sparsify_global, umr_inverse

FACTORIZERS = ("auto", "cholmod", "icf")
MAX_RESTARTS = 30
CHOLMOD_FACTOR_BUDGET = 0.25  # share of available memory the exact factor may take before 'auto' picks icf
# Above this many items COLAMD's analysis of X^T X outlasts the whole ICF fit (on a 1M-item power-law
# catalogue it had not finished after 6 minutes); ICF then orders items by popularity, rarest first.
COLAMD_MAX_ITEMS = 200_000


def _cholmod():
    # the OpenBLAS CHOLMOD links may not know this CPU: see sparseidx/openblas.py
    return import_pinned("sksparse.cholmod")


def _ordering(X: sp.csr_matrix, mode: str):
    """CHOLMOD's analysis of X^T X (COLAMD ordering), without forming X^T X."""
    return _cholmod().analyze_AAt(sp.csc_matrix(X.T), mode=mode, ordering_method="colamd")


def icf_ordering(X: sp.csr_matrix) -> tuple[np.ndarray, str]:
    """(permutation, name): COLAMD up to COLAMD_MAX_ITEMS items, else popularity ascending (dense items last)."""
    n = X.shape[1]
    if n <= COLAMD_MAX_ITEMS:
        return _ordering(X, "simplicial").P(), "colamd"
    return np.argsort(popularity(X), kind="stable"), "popularity, rarest first"


def predicted_factor_nnz(X: sp.csr_matrix) -> int:
    """Non-zeros of the exact Cholesky factor of X^T X + l2 I under COLAMD (symbolic analysis only)."""
    return cholesky_nnz(X, _ordering(X, "simplicial").P())


def _choose(X: sp.csr_matrix, factorizer: str, max_nnz: int) -> tuple[str, str]:
    if factorizer != "auto":
        return factorizer, "chosen by the user"
    if X.shape[1] > COLAMD_MAX_ITEMS:
        return "icf", (f"{X.shape[1]:,} items: over {COLAMD_MAX_ITEMS:,}, the exact factor's analysis alone "
                       "would outlast an incomplete factor")
    from ._memory import available_bytes

    nnz = predicted_factor_nnz(X)
    need = nnz * 12  # float64 value + int32 row index per entry
    if need > CHOLMOD_FACTOR_BUDGET * available_bytes():
        return "icf", (f"the exact factor would hold {nnz:,} non-zeros ({need / 2**30:.1f} GiB), over "
                       f"{CHOLMOD_FACTOR_BUDGET:.0%} of available memory")
    return "cholmod", f"the exact factor holds {nnz:,} non-zeros ({need / 2**30:.2f} GiB), which fits in memory"


def cholmod_factor(X: sp.csr_matrix, l2: float, max_nnz: int) -> tuple[sp.csc_matrix, np.ndarray]:
    """(L, p): exact supernodal CHOLMOD factor of P (X^T X + l2 I) P^T, sparsified to ``max_nnz``."""
    factor = _ordering(X, "supernodal")
    p = factor.P()
    factor.cholesky_AAt_inplace(sp.csc_matrix(X.T, dtype=np.float64), beta=l2)
    L = factor.L().tocsc()
    del factor
    log.info("exact factor: %d non-zeros (density %.2e); sparsifying to %d", L.nnz, L.nnz / L.shape[0] ** 2, max_nnz)
    return sparsify_global(L, max_nnz), p


def icf_factor(X: sp.csr_matrix, l2: float, max_nnz: int) -> tuple[sp.csc_matrix, np.ndarray, float, str]:
    """(L, p, shift, ordering name): incomplete Cholesky of the column-scaled, permuted A; restarts on breakdown."""
    n = X.shape[1]
    p, ordering = icf_ordering(X)
    log.info("ICF ordering: %s", ordering)
    A, scale = scaled_gramian(X[:, p], l2)  # unit diagonal: the shift and the budget act uniformly
    budget = max(int(max_nnz // max(n, 1)) - 1, 0)
    shift = 0.0
    for attempt in range(MAX_RESTARTS):
        L = incomplete_cholesky(A, budget, shift)
        if not isinstance(L, int):
            break
        new_shift = 1e-3 * 4.0 ** attempt
        log.warning("incomplete Cholesky broke down at column %d with shift %.1e; restarting with shift %.1e",
                    L, shift, new_shift)
        shift = new_shift
    else:
        raise SparseIdxError(f"incomplete Cholesky broke down {MAX_RESTARTS} times; increase --l2 or --density")
    L = sp.csc_matrix(sp.diags(1.0 / scale) @ L)  # back to the unscaled A: L L^T ~ A (+ shift)
    return sparsify_global(L, max_nnz), p, shift, ordering


def fit_sansa(X, l2: float = 20.0, factorizer: str = "auto", density: float | None = None,
              nnz_per_item: int | None = None, scans: int = 1, finetune_steps: int = 5,
              item_ids: np.ndarray | None = None) -> Factors:
    """Train SANSA embeddings; ``density`` (of the factor and its inverse, fraction of n^2) or ``nnz_per_item``.

    Default density: 5e-4. Returns Factors with E = W^T, V = decoder Z^T, priors 1,
    and the factorizer used, its reason, the UMR losses and the non-zeros in params.
    """
    check_finite(l2=l2, density=density)
    X, item_ids = as_matrix(X, item_ids)
    n = X.shape[1]
    if factorizer not in FACTORIZERS:
        raise DataError(f"unknown factorizer {factorizer!r}; choose one of {', '.join(FACTORIZERS)}")
    if l2 <= 0:
        raise DataError(f"l2 must be positive, got {l2}")
    if density is not None and nnz_per_item is not None:
        raise DataError("give --density or --nnz-per-item, not both")
    if density is not None and not 0 < density <= 1:
        raise DataError(f"density must be in (0, 1], got {density}")
    if nnz_per_item is not None and nnz_per_item < 1:
        raise DataError(f"nnz_per_item must be at least 1, got {nnz_per_item}")
    if scans < 0 or finetune_steps < 0:
        raise DataError("scans and finetune_steps must be non-negative")
    if density is None:
        density = 5e-4 if nnz_per_item is None else nnz_per_item / n
    max_nnz = max(int(round(density * n * n)), 2 * n)  # at least the diagonal and one entry per column
    t0 = time.perf_counter()
    X = sp.csr_matrix(X, dtype=np.float64)
    chosen, why = _choose(X, factorizer, max_nnz)
    log.info("SANSA factorizer: %s (%s)", chosen, why)
    shift, ordering = 0.0, "colamd"
    with stage(f"{chosen} factor of X^T X + {l2:g} I ({n:,} items, target {max_nnz:,} non-zeros)"):
        if chosen == "cholmod":
            L, p = cholmod_factor(X, l2, max_nnz)
        else:
            L, p, shift, ordering = icf_factor(X, l2, max_nnz)
    d = L.diagonal()
    L_unit = sp.csc_matrix(L @ sp.diags(1.0 / d))  # L D L^T with D = diag(d)^2
    D = d ** 2
    with stage(f"UMR inverse ({scans} scan(s), {finetune_steps} finetune step(s))"):
        K, losses = umr_inverse(L_unit, max_nnz, scans=scans, finetune_steps=finetune_steps)
    inv_p = np.argsort(p)
    W = sp.csr_matrix(K)[:, inv_p]  # A^-1 ~ W^T D^-1 W in the original item order
    Wd = sp.csr_matrix(sp.diags(1.0 / D) @ W)
    diag = np.asarray(W.multiply(Wd).sum(axis=0)).ravel()
    if np.any(diag <= 0):
        raise SparseIdxError("the approximate inverse has a non-positive diagonal; raise --density or --l2")
    V = sp.csr_matrix(-(Wd @ sp.diags(1.0 / diag)).T)
    E = sp.csr_matrix(W.T)
    params = {"l2": float(l2), "factorizer": chosen, "factorizer_reason": why, "density": float(density),
              "target_nnz": int(max_nnz), "nnz_factor": int(L.nnz), "nnz_inverse": int(K.nnz),
              "ordering": ordering, "icf_shift": float(shift), "scans": int(scans),
              "finetune_steps": int(finetune_steps),
              "umr_losses": [float(x) for x in losses], "fit_seconds": round(time.perf_counter() - t0, 3)}
    return Factors(encoder=E, embeddings=V, priors=np.ones(n, dtype=np.float32), item_ids=item_ids,
                   model="sansa", params=params, popularity=popularity(X))
