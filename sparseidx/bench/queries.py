"""The queries of a benchmark: test users' train histories over an index's items, and their test rows."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data import Interactions, lookup_ids
from ..evaluate import onto_items


def benchmark_queries(idx, train: Interactions, test: Interactions, n_queries: int | None = None, seed: int = 0
                      ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Histories of the test users (a seeded sample of them), their test rows and |test| sizes."""
    sizes = np.diff(test.X.indptr)
    users = np.flatnonzero(sizes > 0)
    rows, in_train = lookup_ids(train.user_ids, test.user_ids[users])
    users, rows = users[in_train], rows[in_train]
    if n_queries is not None and n_queries < len(users):
        pick = np.sort(np.random.default_rng(seed).choice(len(users), n_queries, replace=False))
        users, rows = users[pick], rows[pick]
    H = onto_items(train, idx.item_ids)[rows]
    H.sort_indices()
    col, known = lookup_ids(idx.item_ids, test.item_ids)
    T = test.X[users].tocoo()
    keep = known[T.col]
    T = sp.csr_matrix((T.data[keep], (T.row[keep], col[T.col[keep]])), shape=(len(users), idx.n_items))
    return H, T, sizes[users]
