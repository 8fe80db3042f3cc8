"""Compiled in-place helpers for dense symmetric matrices held in one N x N buffer."""

from __future__ import annotations

import numba as nb
import numpy as np

_TILE = 64


@nb.njit(parallel=True, cache=True)
def mirror_lower(buf, scale):
    """Copy the strict lower triangle onto the upper one times ``scale`` (buf[j, i] = scale * buf[i, j] for
    i > j), tiled; ``mirror_lower(buf.T, s)`` copies the upper triangle onto the lower one."""
    n = buf.shape[0]
    nt = (n + _TILE - 1) // _TILE
    for bi in nb.prange(nt):
        i0 = bi * _TILE
        i1 = min(n, i0 + _TILE)
        for bj in range(bi + 1):
            j0 = bj * _TILE
            j1 = min(n, j0 + _TILE)
            for i in range(i0, i1):
                for j in range(j0, min(j1, i)):
                    buf[j, i] = scale * buf[i, j]


@nb.njit(parallel=True, cache=True)
def scatter_gram(buf, indptr, indices, data, shift):
    """buf = G + shift * I from G in CSR (indices sorted), writing the lower triangle only."""
    n = buf.shape[0]
    for i in nb.prange(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if j > i:
                break
            buf[i, j] = data[p]
        buf[i, i] += shift


@nb.njit(parallel=True, cache=True)
def count_row_nonzeros(buf):
    """Non-zeros in each row of the lower triangle (diagonal included)."""
    n = buf.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for i in nb.prange(n):
        c = 0
        for j in range(i + 1):
            if buf[i, j] != 0.0:
                c += 1
        out[i] = c
    return out


@nb.njit(parallel=True, cache=True)
def prune_lower_rows(buf, k, indptr, out_indices, out_data):
    """Write the k largest-|value| entries of each lower-triangular row into CSR arrays.

    ``indptr`` must hold min(k, nnz(row)) per row, cumulated. Ties at the threshold
    keep the lower column indices. Output columns are sorted.
    """
    n = buf.shape[0]
    for i in nb.prange(n):
        start = indptr[i]
        want = indptr[i + 1] - start
        if want == 0:
            continue
        row = buf[i, : i + 1]
        nnz = 0
        for j in range(i + 1):
            if row[j] != 0.0:
                nnz += 1
        if want >= nnz:
            thr = 0.0
            n_ties = 0
        else:
            mags = np.abs(row)
            thr = np.partition(mags, i + 1 - want)[i + 1 - want]
            above = 0
            for j in range(i + 1):
                if abs(row[j]) > thr:
                    above += 1
            n_ties = want - above
        w = start
        for j in range(i + 1):
            v = row[j]
            if v == 0.0:
                continue
            a = abs(v)
            if a > thr or (want >= nnz):
                out_indices[w] = j
                out_data[w] = v
                w += 1
            elif a == thr and n_ties > 0:
                out_indices[w] = j
                out_data[w] = v
                w += 1
                n_ties -= 1
