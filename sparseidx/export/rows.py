"""Streaming access to an index's embeddings in row batches.

Batches are bounded by a number of non-zeros, so the files are written in bounded
pieces; the matrices come from the index's public ``to_factors`` (held in memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from ..progress import counter

MAX_BATCH_ENTRIES = 4_000_000
USERS_PER_BATCH = 4096


@dataclass
class RowBatch:
    """Rows ``start``..``start + len(ids)`` as CSR parts (indptr relative to the batch)."""

    start: int
    ids: np.ndarray
    indptr: np.ndarray
    dims: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.indptr[r], self.indptr[r + 1]
        return self.dims[a:b], self.weights[a:b]


def sparse_index(index):
    """The index itself if it is sparse, else a DataError saying what can be exported."""
    if getattr(index, "backend", None) != "sparse":
        raise DataError(f"export reads sparse indexes; this one is {getattr(index, 'backend', '?')!r} "
                        "(dense FAISS embeddings are not sparse vectors)")
    return index


def factors_of(index):
    """The index's Factors (encoder, item embeddings as indexed, priors, ids) through its public ``to_factors``."""
    return sparse_index(index).to_factors()


def csr_parts(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (indptr, dims, weights) of a matrix, for ``batches``."""
    return M.indptr, M.indices, M.data


def same_matrix(A: sp.csr_matrix, B: sp.csr_matrix) -> bool:
    """Whether two canonical CSR matrices hold the same entries (the encoder is then the item embeddings)."""
    return (A.shape == B.shape and A.nnz == B.nnz and np.array_equal(A.indptr, B.indptr)
            and np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data))


def batches(indptr, dims, weights, ids, max_entries: int = MAX_BATCH_ENTRIES):
    """Yield RowBatch slices of a CSR matrix, each holding at most ``max_entries`` non-zeros (or one row)."""
    n = len(indptr) - 1
    start = 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + max_entries, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        a, b = indptr[start], indptr[stop]
        yield RowBatch(start, ids[start:stop], np.asarray(indptr[start: stop + 1] - a, dtype=np.int64),
                       np.asarray(dims[a:b]), np.asarray(weights[a:b]))
        start = stop


def progress_batches(indptr, dims, weights, ids, label: str):
    """``batches`` with a progress bar counting rows."""
    with counter(len(ids), label) as progress:
        for b in batches(indptr, dims, weights, ids):
            yield b
            progress.update(len(b))


def load_histories(index, path: str):
    """The user histories in a file over the index's items (unknown items dropped), or a DataError."""
    from ..data import load_interactions

    histories = load_interactions(path, item_ids=index.item_ids, skip_unknown=True)
    if histories.n_users == 0:
        raise DataError(f"{path}: no users to export; give a histories file with at least one user")
    return histories


def user_batches(encoder: sp.csr_matrix, histories):
    """Yield (user ids, U = X E) for loaded histories, a batch of users at a time (bounded memory)."""
    E = encoder
    X = sp.csr_matrix(histories.X, dtype=np.float32)
    with counter(X.shape[0], "users") as progress:
        for s in range(0, X.shape[0], USERS_PER_BATCH):
            U = sp.csr_matrix(X[s: s + USERS_PER_BATCH] @ E)
            U.sort_indices()
            yield histories.user_ids[s: s + USERS_PER_BATCH], U
            progress.update(U.shape[0])
