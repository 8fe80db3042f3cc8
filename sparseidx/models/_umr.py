"""Sparse approximate inverse of a unit lower-triangular L by Uniform Minimal Residual (SANSA).

Start from K = 2I - L (one Schultz step). A scan visits the columns in blocks; for
each column c with residual r = e_c - L k_c it takes the minimal-residual step
k_c += alpha r, alpha = <r, L r> / ||L r||^2, then re-sparsifies K globally to the
target number of non-zeros (largest magnitudes, diagonal always kept). Finetune
steps repeat the update on the ``finetune_width`` columns with the largest
length-normalised residuals (``sansa`` 1.1 updates ceil(n * density) of them). The
loss ||I - L K||_F^2 / n is logged before every finetune step and at the end; a
scan logs the residuals it met, each block's taken just before its own update.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ..progress import counter, log


@nb.njit(cache=True)
def _diagonal_positions(indptr, indices):
    """Position of each column's diagonal entry in a compressed matrix (-1 where it has none)."""
    n = indptr.shape[0] - 1
    out = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            if indices[p] == j:
                out[j] = p
                break
    return out


def sparsify_global(M: sp.csc_matrix, max_nnz: int) -> sp.csc_matrix:
    """Keep the diagonal and the largest-|value| off-diagonal entries, at most ``max_nnz`` in all (in place).

    Temporary memory is one float32 per entry (the magnitudes), whatever the index dtypes.
    """
    M = sp.csc_matrix(M)
    M.eliminate_zeros()
    if M.nnz <= max_nnz:
        return M
    mags = np.abs(M.data).astype(np.float32)
    diag = _diagonal_positions(M.indptr, M.indices)
    diag = diag[diag >= 0]
    mags[diag] = np.inf
    room = max(max_nnz, len(diag))
    cut = np.partition(mags, len(mags) - room)[len(mags) - room]
    drop = mags < cut
    excess = int(len(mags) - drop.sum()) - room
    if excess > 0:  # ties at the threshold: drop the last ones
        drop[np.flatnonzero(mags == cut)[-excess:]] = True
    del mags
    M.data[drop] = 0.0
    M.eliminate_zeros()
    return M


def residual(L: sp.csc_matrix, K: sp.csc_matrix, cols: np.ndarray | None = None) -> sp.csc_matrix:
    """R = I - L K, or its columns ``cols`` only (memory bounded by the block, not by n)."""
    n = L.shape[0]
    if cols is None:
        cols = np.arange(n)
    eye = sp.csc_matrix((np.ones(len(cols)), (cols, np.arange(len(cols)))), shape=(n, len(cols)))
    R = sp.csc_matrix(eye - L @ K[:, cols])
    R.eliminate_zeros()
    return R


def loss(R: sp.csc_matrix) -> tuple[float, np.ndarray]:
    """(||R||_F^2 / columns, squared column norms of R)."""
    sq = np.asarray(R.multiply(R).sum(axis=0)).ravel()
    return float(sq.mean()), sq


def column_residuals(L: sp.csc_matrix, K: sp.csc_matrix, block: int) -> np.ndarray:
    """Squared norms of every column of I - L K, computed block by block."""
    n = L.shape[0]
    return np.concatenate([loss(residual(L, K, np.arange(s, min(s + block, n))))[1] for s in range(0, n, block)])


def _update(L, K, R_part, cols, max_nnz):
    """Minimal-residual step on the columns ``cols`` of K (residuals R_part), then global re-sparsification."""
    P = L @ R_part
    pp = np.asarray(P.multiply(P).sum(axis=0)).ravel()
    rp = np.asarray(R_part.multiply(P).sum(axis=0)).ravel()
    alpha = np.divide(rp, pp, out=np.zeros_like(rp), where=pp > 0)
    step = sp.csc_matrix(R_part @ sp.diags(alpha))
    delta = sp.csc_matrix((step.data, step.indices, np.r_[0, np.cumsum(np.bincount(
        np.repeat(cols, np.diff(step.indptr)), minlength=K.shape[1]))]), shape=K.shape)
    return sparsify_global(K + delta, max_nnz)


def default_block(n: int) -> int:
    """Columns per scan block (and the default finetune width): about 100 blocks, at least 64 columns each."""
    return max(64, int(np.ceil(n / 100)))  # Python overhead stays flat while each block's work grows with n


def umr_inverse(L: sp.csc_matrix, max_nnz: int, scans: int = 1, finetune_steps: int = 5,
                block: int | None = None, finetune_width: int | None = None,
                tol: float = 1e-7) -> tuple[sp.csc_matrix, list[float]]:
    """K ~ L^-1 with at most ``max_nnz`` non-zeros; returns (K, the losses logged).

    The losses: one per scan (mean squared residual of the columns as the scan met
    them), one before each finetune step, one at the end. ``finetune_width`` columns
    are updated per finetune step (default: the scan's ``block``). Residuals are only
    ever formed for one block of columns at a time, so memory is bounded by the
    target non-zeros plus one block, whatever n.
    """
    L = sp.csc_matrix(L, dtype=np.float64)
    n = L.shape[0]
    block = block or default_block(n)
    width = min(finetune_width or block, n)
    K = sparsify_global(sp.csc_matrix(2 * sp.identity(n, format="csc") - L), max_nnz)
    losses = []
    for scan in range(scans):
        threshold = max(10.0 ** (-scan - 2), tol) ** 2 * n  # skip columns already solved to this accuracy
        total = 0.0
        with counter(n, f"UMR scan {scan + 1}") as progress:
            for s in range(0, n, block):
                cols = np.arange(s, min(s + block, n))
                R_part = residual(L, K, cols)
                sq = loss(R_part)[1]
                total += float(sq.sum())
                todo = sq > threshold
                if todo.any():
                    K = _update(L, K, R_part[:, np.flatnonzero(todo)], cols[todo], max_nnz)
                progress.update(len(cols))
        losses.append(total / n)
        log.info("UMR scan %d: loss ||I - LK||_F^2 / n over the columns as the scan met them = %.3e",
                 scan + 1, losses[-1])
    for step in range(finetune_steps):
        sq = column_residuals(L, K, block)
        losses.append(float(sq.mean()))
        log.info("UMR finetune step %d: loss = %.3e", step + 1, losses[-1])
        normalised = np.sqrt(sq) / np.sqrt(np.arange(n, 0, -1))
        worst = np.sort(np.argpartition(normalised, -width)[-width:])
        K = _update(L, K, residual(L, K, worst), worst, max_nnz)
    losses.append(float(column_residuals(L, K, block).mean()))
    log.info("UMR done: loss = %.3e, nnz(K) = %d", losses[-1], K.nnz)
    return K, losses
