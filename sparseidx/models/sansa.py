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

from ..data import popularity
from ..errors import SparseIdxError
from ..factors import Factors
from ..openblas import import_pinned
from ..progress import log, stage
from ._icf import incomplete_cholesky, scaled_gramian
from ._symbolic import cholesky_nnz
from ._umr import default_block, sparsify_global, umr_inverse
from .base import Model, fit_function, l2_param
from .params import AT_LEAST_1, NON_NEGATIVE, POSITIVE, OneOf, Param, ParamError, Range

FACTORIZERS = ("auto", "cholmod", "icf")
FINETUNE_WIDTHS = ("wide", "reference")
DEFAULT_DENSITY = 5e-4
MAX_RESTARTS = 30
DEFAULT_BUDGET_GIB = 4.0  # the exact factor 'auto' accepts; the route's peak RSS was 3.6x it on amazon-book
FACTOR_ENTRY_BYTES = 12  # float64 value + int32 row index per entry of the exact factor
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


def choose_factorizer(X: sp.csr_matrix, factorizer: str, budget_gib: float) -> tuple[str, str]:
    """(factorizer, why): the user's choice, or for 'auto' the exact factor when it fits ``budget_gib``.

    The decision depends on X and the budget only, never on the machine: the same
    command picks the same factorizer everywhere.
    """
    if factorizer != "auto":
        return factorizer, "chosen by the user"
    if X.shape[1] > COLAMD_MAX_ITEMS:
        return "icf", (f"{X.shape[1]:,} items: over {COLAMD_MAX_ITEMS:,}, the exact factor's analysis alone "
                       "would outlast an incomplete factor")
    nnz = predicted_factor_nnz(X)
    need = nnz * FACTOR_ENTRY_BYTES / 2**30
    if need > budget_gib:
        return "icf", (f"the exact factor would hold {nnz:,} non-zeros ({need:.2f} GiB), over the memory budget of "
                       f"{budget_gib:g} GiB (--memory-budget-gib)")
    return "cholmod", (f"the exact factor holds {nnz:,} non-zeros ({need:.2f} GiB), within the memory budget of "
                       f"{budget_gib:g} GiB (--memory-budget-gib)")


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


def finetune_width(width: int | str, n: int, factor_nnz: int) -> int:
    """Columns per UMR finetune step: a count, 'wide' (the scan's block) or 'reference' (sansa 1.1's).

    ``sansa`` 1.1 updates ceil(n x d) columns, d = nnz(L) / n^2 the density of the
    sparsified factor it inverts (computed as it does, rounding included).
    """
    if width == "wide":
        return default_block(n)
    if width == "reference":
        return max(int(np.ceil(n * (factor_nnz / (n * n)))), 1)
    return min(int(width), n)


class Sansa(Model):
    """SANSA embeddings: E = W^T, V = decoder Z^T, priors 1, of the target ``density`` or ``nnz_per_item``.

    The factorizer used, its reason, the UMR losses and the non-zeros are recorded in ``Factors.params``.
    """

    name = "sansa"
    params = (
        l2_param(20.0),
        Param("factorizer", str, "auto", "exact CHOLMOD factor or incomplete Cholesky ('auto': cholmod when the "
              "predicted exact factor fits memory_budget_gib, else icf)", OneOf(FACTORIZERS)),
        Param("memory_budget_gib", float, DEFAULT_BUDGET_GIB, "GiB the exact factor (12 B per predicted non-zero) "
              "may take for factorizer 'auto' to pick cholmod; a fixed figure, not the machine's free memory",
              POSITIVE),
        Param("density", float, None, f"target density of the factor and its inverse, fraction of N^2 "
              f"(when neither it nor nnz_per_item is given: {DEFAULT_DENSITY:g})", Range(0, 1, low_open=True),
              also=(None,)),
        Param("nnz_per_item", int, None, "non-zeros per item (instead of density)", AT_LEAST_1, also=(None,)),
        Param("scans", int, 1, "UMR scans", NON_NEGATIVE),
        Param("finetune_steps", int, 5, "UMR finetune steps", NON_NEGATIVE),
        Param("finetune_width", int, "wide", "columns each UMR finetune step updates: 'reference' as sansa 1.1, "
              "ceil(n x the factor's density); 'wide' max(64, ceil(n/100)), a lower loss; or a count",
              AT_LEAST_1, also=FINETUNE_WIDTHS),
    )

    def _check_together(self) -> None:
        if self.density is not None and self.nnz_per_item is not None:
            raise ParamError("density", "give density (--density) or nnz_per_item (--nnz-per-item), not both")

    def _fit(self, X, item_ids) -> Factors:
        n = X.shape[1]
        t0 = time.perf_counter()
        X = sp.csr_matrix(X, dtype=np.float64)
        W, D, params = self.approximate_inverse(X)
        Wd = sp.csr_matrix(sp.diags(1.0 / D) @ W)
        diag = np.asarray(W.multiply(Wd).sum(axis=0)).ravel()
        if np.any(diag <= 0):
            raise SparseIdxError("the approximate inverse has a non-positive diagonal; raise --density or --l2")
        V = sp.csr_matrix(-(Wd @ sp.diags(1.0 / diag)).T)
        E = sp.csr_matrix(W.T)
        params["fit_seconds"] = round(time.perf_counter() - t0, 3)
        return Factors(encoder=E, embeddings=V, priors=np.ones(n, dtype=np.float32), item_ids=item_ids,
                       model=self.name, params=params, popularity=popularity(X))

    def approximate_inverse(self, X: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, dict]:
        """(W, D, params): the sparse approximate inverse (X^T X + l2 I)^-1 ~ W^T D^-1 W in the item order of X
        (float64 CSR), of this model's parameters; ``params`` records what was done."""
        l2, scans, finetune_steps = self.l2, self.scans, self.finetune_steps
        n = X.shape[1]
        density = self.density
        if density is None:
            density = DEFAULT_DENSITY if self.nnz_per_item is None else self.nnz_per_item / n
        max_nnz = max(int(round(density * n * n)), 2 * n)  # at least the diagonal and one entry per column
        chosen, why = choose_factorizer(X, self.factorizer, self.memory_budget_gib)
        log.info("SANSA factorizer: %s (%s)", chosen, why)
        shift, ordering = 0.0, "colamd"
        with stage(f"{chosen} factor of X^T X + {l2:g} I ({n:,} items, target {max_nnz:,} non-zeros)"):
            if chosen == "cholmod":
                L, p = cholmod_factor(X, l2, max_nnz)
            else:
                L, p, shift, ordering = icf_factor(X, l2, max_nnz)
        d = L.diagonal()
        L_unit = sp.csc_matrix(L @ sp.diags(1.0 / d))  # L D L^T with D = diag(d)^2
        width = finetune_width(self.finetune_width, n, L.nnz)
        with stage(f"UMR inverse ({scans} scan(s), {finetune_steps} finetune step(s) of {width:,} columns)"):
            K, losses = umr_inverse(L_unit, max_nnz, scans=scans, finetune_steps=finetune_steps, finetune_width=width)
        W = sp.csr_matrix(K)[:, np.argsort(p)]  # A^-1 ~ W^T D^-1 W in the original item order
        params = {"l2": float(l2), "factorizer": chosen, "factorizer_reason": why,
                  "memory_budget_gib": float(self.memory_budget_gib), "density": float(density),
                  "target_nnz": int(max_nnz), "nnz_factor": int(L.nnz), "nnz_inverse": int(K.nnz),
                  "ordering": ordering, "icf_shift": float(shift), "scans": int(scans),
                  "finetune_steps": int(finetune_steps), "finetune_width": self.finetune_width,
                  "finetune_columns": int(width), "umr_losses": [float(x) for x in losses]}
        return W, d ** 2, params


fit_sansa = fit_function(Sansa, "fit_sansa")
