"""Sparse approximate inverse of a unit lower-triangular L by Uniform Minimal Residual (SANSA).

Start from K = 2I - L (one Schultz step). A scan visits the columns in blocks; for
each column c with residual r = e_c - L k_c it takes the minimal-residual step
k_c += alpha r, alpha = <r, L r> / ||L r||^2, then re-sparsifies K globally to the
target number of non-zeros (largest magnitudes, diagonal always kept). Finetune
steps repeat the update on the columns with the largest length-normalised
residuals. The loss ||I - L K||_F^2 / n is logged before every step.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..progress import counter, log


def sparsify_global(M: sp.csc_matrix, max_nnz: int) -> sp.csc_matrix:
    """Keep the diagonal and the largest-|value| off-diagonal entries, at most ``max_nnz`` in all."""
    M = sp.csc_matrix(M)
    M.eliminate_zeros()
    if M.nnz <= max_nnz:
        return M
    rows = M.indices
    cols = np.repeat(np.arange(M.shape[1]), np.diff(M.indptr))
    off = rows != cols
    room = max(max_nnz - int((~off).sum()), 0)
    mags = np.abs(M.data[off])
    keep = ~off
    if room > 0:
        cut = np.partition(mags, len(mags) - room)[len(mags) - room] if room < len(mags) else -np.inf
        chosen = np.flatnonzero(off)[mags >= cut][:room] if room < len(mags) else np.flatnonzero(off)
        keep[chosen] = True
    M.data[~keep] = 0.0
    M.eliminate_zeros()
    return M


def residual(L: sp.csc_matrix, K: sp.csc_matrix) -> sp.csc_matrix:
    """R = I - L K."""
    R = sp.csc_matrix(sp.identity(L.shape[0], dtype=K.dtype, format="csc") - L @ K)
    R.eliminate_zeros()
    return R


def loss(R: sp.csc_matrix) -> tuple[float, np.ndarray]:
    """(||R||_F^2 / n, squared column norms of R)."""
    sq = np.asarray(R.multiply(R).sum(axis=0)).ravel()
    return float(sq.mean()), sq


def _update(L, K, R, cols, max_nnz):
    """Minimal-residual step on the columns ``cols`` of K, then global re-sparsification."""
    R_part = R[:, cols]
    P = L @ R_part
    pp = np.asarray(P.multiply(P).sum(axis=0)).ravel()
    rp = np.asarray(R_part.multiply(P).sum(axis=0)).ravel()
    alpha = np.divide(rp, pp, out=np.zeros_like(rp), where=pp > 0)
    step = sp.csc_matrix(R_part @ sp.diags(alpha))
    delta = sp.csc_matrix((step.data, step.indices, np.r_[0, np.cumsum(np.bincount(
        np.repeat(cols, np.diff(step.indptr)), minlength=K.shape[1]))]), shape=K.shape)
    return sparsify_global(K + delta, max_nnz)


def umr_inverse(L: sp.csc_matrix, max_nnz: int, scans: int = 1, finetune_steps: int = 5,
                block: int | None = None, tol: float = 1e-7) -> tuple[sp.csc_matrix, list[float]]:
    """K ~ L^-1 with at most ``max_nnz`` non-zeros; returns (K, losses logged before each step and at the end)."""
    L = sp.csc_matrix(L, dtype=np.float64)
    n = L.shape[0]
    # about 100 blocks per scan: Python overhead stays flat while each block's work grows with n
    block = block or max(64, int(np.ceil(n / 100)))
    K = sparsify_global(sp.csc_matrix(2 * sp.identity(n, format="csc") - L), max_nnz)
    losses = []
    for scan in range(scans):
        R = residual(L, K)
        value, sq = loss(R)
        losses.append(value)
        log.info("UMR scan %d: loss ||I - LK||_F^2 / n = %.3e", scan + 1, value)
        todo = np.flatnonzero(np.sqrt(sq / n) > max(10.0 ** (-scan - 2), tol))
        with counter(len(todo), f"UMR scan {scan + 1}") as progress:
            for s in range(0, len(todo), block):
                cols = todo[s: s + block]
                K = _update(L, K, R, cols, max_nnz)
                progress.update(len(cols))
    for step in range(finetune_steps):
        R = residual(L, K)
        value, sq = loss(R)
        losses.append(value)
        log.info("UMR finetune step %d: loss = %.3e", step + 1, value)
        normalised = np.sqrt(sq) / np.sqrt(np.arange(n, 0, -1))
        worst = np.sort(np.argpartition(normalised, -min(block, n))[-min(block, n):])
        K = _update(L, K, R, worst, max_nnz)
    final, _ = loss(residual(L, K))
    losses.append(final)
    log.info("UMR done: loss = %.3e, nnz(K) = %d", final, K.nnz)
    return K, losses
