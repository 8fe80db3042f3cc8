"""Sparse approximate inverse of a unit lower-triangular L by Uniform Minimal Residual (SANSA).

Start from K = 2I - L (one Schultz step). A scan visits the columns in blocks; for
each column c with residual r = e_c - L k_c it takes the minimal-residual step
k_c += alpha r, alpha = <r, L r> / ||L r||^2, then re-sparsifies K globally to the
target number of non-zeros (largest magnitudes, diagonal always kept). Finetune
steps repeat the update on the ``finetune_width`` columns with the largest
length-normalised residuals (``sansa`` 1.1 updates ceil(n * density) of them). The
loss ||I - L K||_F^2 / n is logged before every finetune step and at the end; a
scan logs the residuals it met, each block's taken just before its own update. Residual
norms come from a compiled kernel (``column_residuals``) that never forms I - L K; residual
columns are formed (scipy) only for the columns a step updates.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ..progress import counter, log
from ._parallel import balanced_ranges, times_column, work_column


@nb.njit(cache=True)
def _diagonal_positions(indptr, indices, columns):
    """Position of each column's diagonal entry in a compressed matrix (-1 where it has none); column j
    of the matrix is column ``columns[j]`` of the whole one, so its diagonal is in row columns[j]."""
    n = indptr.shape[0] - 1
    out = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            if indices[p] == columns[j]:
                out[j] = p
                break
    return out


def _magnitudes(M: sp.csc_matrix, columns: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(|entries| of M in float32, the diagonal's infinite; how many diagonal entries M holds).

    ``columns``: the column of the whole matrix each column of M is (default: M is the whole)."""
    mags = np.abs(M.data).astype(np.float32)
    diag = _diagonal_positions(M.indptr, M.indices, np.arange(M.shape[1]) if columns is None else columns)
    diag = diag[diag >= 0]
    mags[diag] = np.inf
    return mags, len(diag)


def sparsify_global(M: sp.csc_matrix, max_nnz: int) -> sp.csc_matrix:
    """Keep the diagonal and the largest-|value| off-diagonal entries, at most ``max_nnz`` in all (in place).

    Temporary memory is one float32 per entry (the magnitudes), whatever the index dtypes.
    """
    M = sp.csc_matrix(M)
    M.eliminate_zeros()
    if M.nnz <= max_nnz:
        return M
    mags, n_diagonal = _magnitudes(M)
    room = max(max_nnz, n_diagonal)
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


@nb.njit(parallel=True, cache=True)
def _residual_norms(cols, starts, l_indptr, l_rows, l_vals, k_indptr, k_rows, k_vals, out):
    """out[t] = ||e_c - L k_c||^2 for c = cols[t]; positions in ``cols`` split among threads by ``starts``."""
    n = l_indptr.shape[0] - 1
    for chunk in nb.prange(starts.shape[0] - 1):
        w, mark, touched = work_column(n)
        for t_out in range(starts[chunk], starts[chunk + 1]):
            c = cols[t_out]
            nt = times_column(k_indptr[c], k_indptr[c + 1], k_rows, k_vals, l_indptr, l_rows, l_vals, 0, w, mark,
                              touched)
            acc = 0.0 if mark[c] else 1.0  # e_c where L k_c has no entry in row c
            for t in range(nt):
                i = touched[t]
                v = (1.0 - w[i]) if i == c else w[i]
                acc += v * v
                w[i] = 0.0
                mark[i] = 0
            out[t_out] = acc


def column_residuals(L: sp.csc_matrix, K: sp.csc_matrix, cols: np.ndarray | None = None) -> np.ndarray:
    """Squared norms of the columns ``cols`` (default all) of I - L K, without forming it.

    Compiled, the columns split among threads by their non-zeros in K; O(n) memory per thread."""
    K = sp.csc_matrix(K)
    cols = np.arange(K.shape[1], dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
    out = np.empty(len(cols), dtype=np.float64)
    cost = np.empty(len(cols), dtype=np.float64)
    _column_costs(cols, K.indptr, K.indices, L.indptr, cost)
    _residual_norms(cols, balanced_ranges(cost), L.indptr, L.indices, L.data, K.indptr, K.indices, K.data, out)
    return out


@nb.njit(cache=True)
def _column_costs(cols, k_indptr, k_rows, l_indptr, out):
    """Multiply-adds of L k_c for each c in ``cols``: the late columns of L are the dense ones, so the
    threads' shares are balanced by this, not by the columns' non-zeros in K."""
    for t in range(cols.shape[0]):
        c = cols[t]
        acc = 1.0
        for p in range(k_indptr[c], k_indptr[c + 1]):
            r = k_rows[p]
            acc += l_indptr[r + 1] - l_indptr[r]
        out[t] = acc


UPDATE_CHUNK = 256  # columns whose residuals are formed at once in a step: bounds its memory


def _update(L, K, cols, max_nnz):
    """Minimal-residual step on the columns ``cols`` of K, then global re-sparsification.

    Equal to stepping all of ``cols`` at once and keeping the largest ``max_nnz`` (the diagonal
    always), but formed UPDATE_CHUNK columns at a time: the largest max_nnz magnitudes met so far
    (the unchanged columns', then each chunk's) bound the final cut from below, so a stepped entry
    under that floor can never be kept and is dropped at once. A step's memory is then one chunk's
    residuals plus what can survive, not every residual of ``cols`` (22 GiB at 10^6 items)."""
    n = K.shape[0]
    outside = np.ones(n, dtype=bool)
    outside[cols] = False
    pool = _magnitudes(K)[0][np.repeat(outside, np.diff(K.indptr))]
    room = max(max_nnz, n)  # sparsify_global keeps max(max_nnz, diagonal entries) and max_nnz >= 2n
    floor = np.float32(0.0)
    parts = []
    for s in range(0, len(cols), UPDATE_CHUNK):
        chunk = cols[s: s + UPDATE_CHUNK]
        R_part = residual(L, K, chunk)
        rp, pp = np.empty(len(chunk)), np.empty(len(chunk))
        _step_terms(balanced_ranges(np.diff(R_part.indptr)), L.indptr, L.indices, L.data, R_part.indptr,
                    R_part.indices, R_part.data, rp, pp)
        alpha = np.divide(rp, pp, out=np.zeros_like(rp), where=pp > 0)
        new = sp.csc_matrix(K[:, chunk] + R_part @ sp.diags(alpha))
        del R_part
        new.sort_indices()
        mags = _magnitudes(new, chunk)[0]
        new.data[mags < floor] = 0.0  # the diagonal's magnitude is infinite: never dropped
        new.eliminate_zeros()
        parts.append(new)
        pool = np.concatenate([pool, mags[mags >= floor]])
        if len(pool) > room + room // 2:  # a new floor now and then: each costs one pass over the pool
            floor = np.partition(pool, len(pool) - room)[len(pool) - room]
            pool = pool[pool >= floor]
    stepped = sp.hstack(parts, format="csc") if parts else sp.csc_matrix((n, 0))
    placed = sp.csc_matrix((stepped.data, stepped.indices, np.r_[0, np.cumsum(np.bincount(
        np.repeat(cols, np.diff(stepped.indptr)), minlength=n))]), shape=K.shape)
    return sparsify_global(sp.csc_matrix(K @ sp.diags(outside.astype(np.float64))) + placed, max_nnz)


@nb.njit(parallel=True, cache=True)
def _step_terms(starts, l_indptr, l_rows, l_vals, r_indptr, r_rows, r_vals, rp, pp):
    """rp[t] = <r, L r> and pp[t] = ||L r||^2 for every column r of R, without forming L R."""
    n = l_indptr.shape[0] - 1
    for chunk in nb.prange(starts.shape[0] - 1):
        w, mark, touched = work_column(n)
        rv = np.zeros(n, dtype=np.float64)
        for t in range(starts[chunk], starts[chunk + 1]):
            for p in range(r_indptr[t], r_indptr[t + 1]):
                rv[r_rows[p]] = r_vals[p]
            nt = times_column(r_indptr[t], r_indptr[t + 1], r_rows, r_vals, l_indptr, l_rows, l_vals, 0, w, mark,
                              touched)
            a = 0.0
            b = 0.0
            for u in range(nt):
                i = touched[u]
                a += rv[i] * w[i]
                b += w[i] * w[i]
                w[i] = 0.0
                mark[i] = 0
            for p in range(r_indptr[t], r_indptr[t + 1]):
                rv[r_rows[p]] = 0.0
            rp[t] = a
            pp[t] = b



def changed_columns(A: sp.csc_matrix, B: sp.csc_matrix) -> np.ndarray:
    """Columns where A and B differ in any entry (exactly: a stored difference that is not zero)."""
    D = sp.csc_matrix(B - A)
    D.eliminate_zeros()
    return np.flatnonzero(np.diff(D.indptr))


def default_block(n: int) -> int:
    """Columns per scan block (and the default finetune width): about 100 blocks, at least 64 columns each."""
    return max(64, int(np.ceil(n / 100)))  # Python overhead stays flat while each block's work grows with n


def umr_inverse(L: sp.csc_matrix, max_nnz: int, scans: int = 1, finetune_steps: int = 5,
                block: int | None = None, finetune_width: int | None = None,
                tol: float = 1e-7) -> tuple[sp.csc_matrix, list[float]]:
    """K ~ L^-1 with at most ``max_nnz`` non-zeros; returns (K, the losses logged).

    The losses: one per scan (mean squared residual of the columns as the scan met
    them), one before each finetune step, one at the end. ``finetune_width`` columns
    are updated per finetune step (default: the scan's ``block``). Residual columns are only
    ever formed for the columns of one step, so memory is bounded by the target
    non-zeros plus one block, whatever n.
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
                sq = column_residuals(L, K, cols)
                total += float(sq.sum())
                todo = cols[sq > threshold]
                if len(todo):  # residuals formed only for the columns that take a step
                    K = _update(L, K, todo, max_nnz)
                progress.update(len(cols))
        losses.append(total / n)
        log.info("UMR scan %d: loss ||I - LK||_F^2 / n over the columns as the scan met them = %.3e",
                 scan + 1, losses[-1])
    sq = column_residuals(L, K)
    for step in range(finetune_steps):
        losses.append(float(sq.mean()))
        log.info("UMR finetune step %d: loss = %.3e", step + 1, losses[-1])
        normalised = np.sqrt(sq) / np.sqrt(np.arange(n, 0, -1))
        worst = np.sort(np.argpartition(normalised, -width)[-width:])
        updated = _update(L, K, worst, max_nnz)
        changed = changed_columns(K, updated)  # the step's columns and those re-sparsification cut
        K = updated
        sq[changed] = column_residuals(L, K, changed)  # a column's residual depends on its own column only
    losses.append(float(sq.mean()))
    log.info("UMR done: loss = %.3e, nnz(K) = %d", losses[-1], K.nnz)
    return K, losses
