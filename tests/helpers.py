"""Small synthetic data and brute-force references shared by the tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def random_interactions(n_users=80, n_items=40, density=0.12, seed=0) -> sp.csr_matrix:
    """A binary users x items matrix where every item has at least one user."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < density).astype(np.float32)
    X[rng.integers(0, n_users, n_items), np.arange(n_items)] = 1.0
    return sp.csr_matrix(X)


def write_lines(path, X: sp.csr_matrix, user_ids=None, item_ids=None) -> None:
    """Write X in the 'user item item ...' format."""
    user_ids = np.arange(X.shape[0]) if user_ids is None else user_ids
    item_ids = np.arange(X.shape[1]) if item_ids is None else item_ids
    with open(path, "w") as fh:
        for u in range(X.shape[0]):
            items = item_ids[X.indices[X.indptr[u]: X.indptr[u + 1]]]
            fh.write(" ".join(str(t) for t in [user_ids[u], *items]) + "\n")



def dense_ease(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE weights in float64 by numpy's general inverse (an independent reference)."""
    G = (X.T @ X).toarray().astype(np.float64)
    P = np.linalg.inv(G + l2 * np.eye(G.shape[0]))
    B = np.eye(G.shape[0]) - P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def brute_force_topk(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int):
    """Top-k per row by (score desc, item index asc), excluded items never returned; k capped at the items."""
    scores = np.array(scores, dtype=np.float64)
    k = min(k, scores.shape[1])
    if exclude is not None:
        scores[exclude.toarray() != 0] = np.nan
    ids, vals = [], []
    for row in scores:
        cand = np.flatnonzero(~np.isnan(row))
        order = cand[np.lexsort((cand, -row[cand]))][:k]
        ids.append(np.pad(order, (0, k - len(order)), constant_values=-1))
        vals.append(np.pad(row[order], (0, k - len(order)), constant_values=-np.inf))
    return np.array(vals), np.array(ids)
