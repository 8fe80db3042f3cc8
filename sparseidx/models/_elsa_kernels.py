"""Compiled steps of ELSA training: the optimiser update, row normalisation and its gradient, and the
products of a batch with item rows held as k non-zeros each (ELL: ``cols``/``vals``, items x k).

Batch arrays are held with users last (``zt``: dims x users, ``gt``: columns x users), so every
inner loop runs over contiguous users and vectorises.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(parallel=True, cache=True)
def nadam_update(param, grad, m, v, keep, b1, b2, eps, step_g, step_m, bias2):
    """One NAdam step over flat float32 arrays: m, v updated, then param -= step_g*g/d + step_m*m/d with
    d = sqrt(v/bias2) + eps. Where ``keep`` (uint8, or empty for none) is 0, grad is 0 and param stays 0."""
    n = param.size
    masked = keep.size > 0
    for p in nb.prange(n):
        g = grad[p]
        if masked and keep[p] == 0:
            g = np.float32(0.0)
        mp = b1 * m[p] + (1.0 - b1) * g
        vp = b2 * v[p] + (1.0 - b2) * g * g
        m[p] = mp
        v[p] = vp
        d = np.sqrt(vp / bias2) + eps
        if masked and keep[p] == 0:
            param[p] = 0.0
        else:
            param[p] -= step_g * g / d + step_m * mp / d


@nb.njit(parallel=True, cache=True, fastmath=True)
def normalise_rows_into(a, out, norms):
    """out = a with unit-norm rows, norms = the row norms (1 for an all-zero row, which stays zero)."""
    for i in nb.prange(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[i, j] * a[i, j]
        r = np.sqrt(s) if s > 0.0 else 1.0
        norms[i] = r
        for j in range(a.shape[1]):
            out[i, j] = a[i, j] / r


@nb.njit(parallel=True, cache=True, fastmath=True)
def project_rows(grad_hat, a_hat, norms):
    """In place: the gradient with respect to rows before normalisation from the one after,
    (g - a_hat <a_hat, g>) / norm per row."""
    for i in nb.prange(grad_hat.shape[0]):
        s = 0.0
        for j in range(grad_hat.shape[1]):
            s += a_hat[i, j] * grad_hat[i, j]
        for j in range(grad_hat.shape[1]):
            grad_hat[i, j] = (grad_hat[i, j] - a_hat[i, j] * s) / norms[i]


_BLOCKS = 64


@nb.njit(parallel=True, cache=True, fastmath=True)
def residual_sums(yt, xt, w, clip):
    """Per user (columns of yt, xt): sum_r w_r y_r^2, sum_r w_r x_r^2, sum_r w_r y_r x_r (3 x users), after
    clipping yt in place to [0, clip] when clip > 0."""
    rows, b = yt.shape
    partial = np.zeros((_BLOCKS, 3, b))
    size = (rows + _BLOCKS - 1) // _BLOCKS
    for blk in nb.prange(_BLOCKS):
        for r in range(blk * size, min(rows, (blk + 1) * size)):
            wr = w[r]
            for u in range(b):
                y = yt[r, u]
                if clip > 0:
                    y = min(max(y, 0.0), clip)
                    yt[r, u] = y
                x = xt[r, u]
                partial[blk, 0, u] += wr * y * y
                partial[blk, 1, u] += wr * x * x
                partial[blk, 2, u] += wr * y * x
    return partial.sum(axis=0)


@nb.njit(parallel=True, cache=True, fastmath=True)
def residual_gradient(yt, xt, w, y_norm, x_norm, s, c, clip):
    """In place, yt (clipped residual) becomes dL/dY: (c w (y/|y| - x/|x|) - w s y/|y|) / |y|, zero where the
    clip is flat (y at 0 or at clip)."""
    rows, b = yt.shape
    for r in nb.prange(rows):
        wr = w[r]
        for u in range(b):
            y = yt[r, u]
            yh = y / y_norm[u]
            g = (c * wr * (yh - xt[r, u] / x_norm[u]) - wr * yh * s[u]) / y_norm[u]
            if clip > 0 and not (0.0 < y < clip):
                g = 0.0
            yt[r, u] = g


@nb.njit(parallel=True, cache=True)
def add_sparse_times_dense(out, indptr, indices, data, w):
    """out[i] += sum_p data[p] * w[indices[p]] over row i of a CSR matrix (items x users)."""
    for i in nb.prange(out.shape[0]):
        for p in range(indptr[i], indptr[i + 1]):
            x = data[p]
            u = indices[p]
            for j in range(w.shape[1]):
                out[i, j] += x * w[u, j]


@nb.njit(parallel=True, cache=True)
def ell_user_rows(indptr, indices, data, cols, vals, dims):
    """Z = X_b A (users x dims) for a CSR batch X_b and ELL rows A."""
    n_users = indptr.size - 1
    z = np.zeros((n_users, dims), dtype=np.float32)
    for u in nb.prange(n_users):
        for p in range(indptr[u], indptr[u + 1]):
            i = indices[p]
            x = data[p]
            for t in range(cols.shape[1]):
                z[u, cols[i, t]] += x * vals[i, t]
    return z


# The ELL products below take an item's entries four at a time: one pass over the users updates
# (or reads) the batch row once for four Z^T / G^T rows, which cuts loads and stores per multiply-add
# (Compressed ELSA at 4,096 dims trained in 1,102 s against 1,203 s one at a time: docs/elsa-reference.md).


@nb.njit(parallel=True, cache=True)
def ell_column_scores(items, cols, vals, zt):
    """Y^T (columns x users): row r is A[items[r]] Z^T for ELL rows A and Z^T (dims x users)."""
    yt = np.zeros((items.size, zt.shape[1]), dtype=np.float32)
    k = cols.shape[1]
    for r in nb.prange(items.size):
        i = items[r]
        y = yt[r]
        t = 0
        while t + 4 <= k:
            a0, a1, a2, a3 = vals[i, t], vals[i, t + 1], vals[i, t + 2], vals[i, t + 3]
            z0, z1, z2, z3 = zt[cols[i, t]], zt[cols[i, t + 1]], zt[cols[i, t + 2]], zt[cols[i, t + 3]]
            for u in range(y.size):
                y[u] += a0 * z0[u] + a1 * z1[u] + a2 * z2[u] + a3 * z3[u]
            t += 4
        for t in range(t, k):
            a = vals[i, t]
            z = zt[cols[i, t]]
            for u in range(y.size):
                y[u] += a * z[u]
    return yt


@nb.njit(parallel=True, cache=True)
def ell_dim_sums(dim_ptr, dim_entries, column_of, vals, gt, dims):
    """W^T (dims x users) = A_C^T G^T: row j sums vals[e] * gt[column_of[item of e]] over the entries e of
    dimension j (``dim_ptr``/``dim_entries``: flat ELL positions grouped by dimension), for items with a column."""
    k = vals.shape[1]
    flat = vals.ravel()
    wt = np.zeros((dims, gt.shape[1]), dtype=np.float32)
    for j in nb.prange(dims):
        out = wt[j]
        p, end = dim_ptr[j], dim_ptr[j + 1]
        while p + 4 <= end:
            e0, e1, e2, e3 = dim_entries[p], dim_entries[p + 1], dim_entries[p + 2], dim_entries[p + 3]
            r0, r1, r2, r3 = column_of[e0 // k], column_of[e1 // k], column_of[e2 // k], column_of[e3 // k]
            if r0 < 0 or r1 < 0 or r2 < 0 or r3 < 0:
                break
            a0, a1, a2, a3 = flat[e0], flat[e1], flat[e2], flat[e3]
            g0, g1, g2, g3 = gt[r0], gt[r1], gt[r2], gt[r3]
            for u in range(out.size):
                out[u] += a0 * g0[u] + a1 * g1[u] + a2 * g2[u] + a3 * g3[u]
            p += 4
        for p in range(p, end):
            e = dim_entries[p]
            r = column_of[e // k]
            if r >= 0:
                a = flat[e]
                g = gt[r]
                for u in range(out.size):
                    out[u] += a * g[u]
    return wt


@nb.njit(parallel=True, cache=True, fastmath=True)
def ell_gradient(xt_indptr, xt_indices, xt_data, w, gt, zt, column_of, cols, vals, norms):
    """The gradient with respect to ELL rows before normalisation (items x k): for entry (i, j),
    sum_u X[u, i] W[u, j] + <G^T[column of i], Z^T[j]>, then projected as in ``project_rows``."""
    n, k = cols.shape
    grad = np.zeros((n, k), dtype=np.float32)
    for i in nb.prange(n):
        for p in range(xt_indptr[i], xt_indptr[i + 1]):
            x = xt_data[p]
            u = xt_indices[p]
            for t in range(k):
                grad[i, t] += x * w[u, cols[i, t]]
        r = column_of[i]
        if r >= 0:
            g = gt[r]
            t = 0
            while t + 4 <= k:
                z0, z1, z2, z3 = zt[cols[i, t]], zt[cols[i, t + 1]], zt[cols[i, t + 2]], zt[cols[i, t + 3]]
                s0 = s1 = s2 = s3 = np.float32(0.0)
                for u in range(g.size):
                    s0 += g[u] * z0[u]
                    s1 += g[u] * z1[u]
                    s2 += g[u] * z2[u]
                    s3 += g[u] * z3[u]
                grad[i, t] += s0
                grad[i, t + 1] += s1
                grad[i, t + 2] += s2
                grad[i, t + 3] += s3
                t += 4
            for t in range(t, k):
                z = zt[cols[i, t]]
                s = np.float32(0.0)
                for u in range(g.size):
                    s += g[u] * z[u]
                grad[i, t] += s
        s = 0.0
        for t in range(k):
            s += vals[i, t] * grad[i, t]
        for t in range(k):
            grad[i, t] = (grad[i, t] - vals[i, t] * s) / norms[i]
    return grad
