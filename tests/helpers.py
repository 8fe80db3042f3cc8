"""Small synthetic data and brute-force references shared by the tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparseidx import Factors


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


def random_factors(seed, n_items, n_dims, density, zero_priors=False, popularity=True) -> Factors:
    """Random signed E and V, priors in [0.2, 2] (some 0 with ``zero_priors``), item ids 0, 10, 20, ..."""
    rng = np.random.default_rng(seed)
    E = sp.random(n_items, n_dims, density=density, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.normal(size=n))
    V = sp.random(n_items, n_dims, density=density, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.normal(size=n))
    priors = rng.uniform(0.2, 2.0, n_items)
    if zero_priors:
        priors[rng.random(n_items) < 0.3] = 0.0
    pop = rng.integers(0, 100, n_items) if popularity else None
    return Factors(encoder=E, embeddings=V, priors=priors, item_ids=np.arange(n_items) * 10, popularity=pop)


def random_histories(seed, n_queries, n_items, max_len) -> sp.csr_matrix:
    """Binary histories of 1..max_len distinct items each."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for _ in range(n_queries):
        rows.append(rng.choice(n_items, size=rng.integers(1, max_len + 1), replace=False))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return sp.csr_matrix((np.ones(indptr[-1], dtype=np.float32), np.concatenate(rows), indptr),
                         shape=(n_queries, n_items))


def residual_loss(R: sp.csc_matrix) -> tuple[float, np.ndarray]:
    """(||R||_F^2 / columns, squared column norms of R), by scipy: the reference for the UMR kernels."""
    sq = np.asarray(R.multiply(R).sum(axis=0)).ravel()
    return float(sq.mean()), sq
