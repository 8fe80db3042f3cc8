"""Cholesky embeddings against dense EASE (float64 numpy) and the paper's construction."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import dense_ease, random_interactions

from sparseidx import fit_cholesky
from sparseidx.errors import DataError, MemoryBudgetError, SparseIdxError
from sparseidx.models._sparse_cholesky import incomplete_cholesky, lower_rows
from sparseidx.models.cholesky import Cholesky, choose_route, dense_bytes, ease_weights, item_order

# float32 LAPACK against a float64 general inverse: scores agree to this absolute tolerance
TOL = 2e-5


@pytest.mark.parametrize("order", ["popularity", "cooccurrence", "none"])
def test_dense_cholesky_scores_equal_ease_on_unseen_items(order):
    X = random_interactions(120, 50, seed=3)
    factors = fit_cholesky(X, l2=4.0, k=None, order=order)
    ease = X @ dense_ease(X, 4.0)
    chol = factors.dense_scores(X)
    unseen = X.toarray() == 0
    assert np.abs(ease - chol)[unseen].max() < TOL
    assert factors.params["order"] == order


def test_embeddings_factorise_beta_dp_minus_p():
    X = random_interactions(100, 30, seed=4)
    factors = fit_cholesky(X, l2=3.0, beta=2.5, k=None, order="none")
    G = (X.T @ X).toarray().astype(np.float64)
    P = np.linalg.inv(G + 3.0 * np.eye(30))
    L = factors.embeddings.toarray().astype(np.float64)
    assert np.allclose(L @ L.T, 2.5 * np.diag(np.diag(P)) - P, atol=1e-5)
    assert np.allclose(factors.priors, 1.0 / np.diag(P), rtol=1e-4)
    assert factors.params["beta"] == 2.5 and not factors.params["beta_auto"]


def test_float64_route_factorises_beta_dp_minus_p_to_double_precision():
    X = random_interactions(100, 30, seed=4)
    G = (X.T @ X).toarray().astype(np.float64)
    P = np.linalg.inv(G + 3.0 * np.eye(30))
    want = 2.5 * np.diag(np.diag(P)) - P
    f64 = fit_cholesky(X, l2=3.0, beta=2.5, k=None, order="none", dtype="float64")
    f32 = fit_cholesky(X, l2=3.0, beta=2.5, k=None, order="none")
    L64 = f64.embeddings.toarray().astype(np.float64)  # stored in float32 either way
    assert np.abs(L64 @ L64.T - want).max() < np.abs(want).max() * 1e-6
    assert f64.params["dtype"] == "float64" and f32.params["dtype"] == "float32"
    assert np.abs(f64.embeddings.toarray() - f32.embeddings.toarray()).max() < 1e-4
    with pytest.raises(DataError, match="dtype must be one of float32, float64, got 'float16'"):
        fit_cholesky(X, dtype="float16")


def test_popularity_order_gives_lower_triangular_rows_in_that_order():
    X = random_interactions(100, 30, seed=5)
    factors = fit_cholesky(X, l2=3.0, k=None, order="popularity")
    perm = item_order(X, "popularity")
    pop = np.asarray(X.sum(axis=0)).ravel()
    assert np.all(np.diff(pop[perm]) <= 0)
    L = factors.embeddings.toarray()[perm]  # rows in fitted order: dimension j is item perm[j]
    assert np.allclose(np.triu(L, 1), 0.0)


def test_auto_beta_raises_until_positive_definite_and_records_it():
    X = random_interactions(300, 80, density=0.1, seed=1)
    G = (X.T @ X).toarray().astype(np.float64)
    P = np.linalg.inv(G + 5.0 * np.eye(80))
    d = np.diag(P)
    lam_max = np.linalg.eigvalsh(P / np.sqrt(np.outer(d, d))).max()
    assert lam_max > 2.0, "test data must need a beta above the starting value 2"
    factors = fit_cholesky(X, l2=5.0, k=None)
    assert factors.params["beta_auto"]
    assert factors.params["beta"] > lam_max
    with pytest.raises(SparseIdxError, match="not positive definite at beta=2"):
        fit_cholesky(X, l2=5.0, beta=2.0, k=None)


def test_pruning_keeps_the_k_largest_entries_of_each_row():
    X = random_interactions(150, 60, seed=6)
    full = fit_cholesky(X, l2=2.0, k=None, order="none").embeddings.toarray()
    pruned = fit_cholesky(X, l2=2.0, k=7, order="none").embeddings
    assert np.diff(pruned.indptr).max() <= 7
    dense = pruned.toarray()
    for i in range(60):
        nz = np.flatnonzero(full[i])
        want = nz[np.argsort(-np.abs(full[i, nz]), kind="stable")[:7]]
        assert set(np.flatnonzero(dense[i])) == set(want)
        assert np.allclose(dense[i, want], full[i, want])


def test_ease_weights_match_reference():
    X = random_interactions(90, 35, seed=7)
    assert np.abs(ease_weights(X, 6.0) - dense_ease(X, 6.0)).max() < TOL


def test_refuses_when_n_squared_does_not_fit():
    X = random_interactions(50, 40)
    with pytest.raises(MemoryBudgetError, match="use --route sparse"):
        fit_cholesky(X, memory_limit=1000)


@pytest.mark.parametrize("kwargs,message", [
    ({"l2": 0.0}, r"^l2 must be a finite number > 0, got 0.0$"),
    ({"beta": 1.0}, r"^beta must be a finite number > 1 or 'auto', got 1.0$"),
    ({"k": 0}, r"^k must be an integer >= 1 or None, got 0$"),
    ({"k": 2.5}, r"^k must be an integer >= 1 or None, got 2.5$"),
    ({"order": "random"}, r"^order must be one of popularity, cooccurrence, none, got 'random'$"),
    ({"dims": 8}, r"^model 'chol' takes no parameter dims; it takes beta, candidates, dtype, factorizer, "
                  r"inverse_nnz_per_item, k, l2, memory_budget_gib, memory_limit, order, route$"),
    ({"route": "fast"}, r"^route must be one of auto, dense, sparse, got 'fast'$"),
    ({"memory_budget_gib": 0.0}, r"^memory_budget_gib must be a finite number > 0, got 0.0$"),
    ({"inverse_nnz_per_item": 0}, r"^inverse_nnz_per_item must be an integer >= 1, got 0$"),
    ({"candidates": 0}, r"^candidates must be an integer >= 1 or None, got 0$"),
    ({"route": "sparse", "order": "cooccurrence"}, r"^order 'cooccurrence' needs the Gram matrix"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(DataError, match=message):
        fit_cholesky(random_interactions(30, 10), **kwargs)


def test_item_ids_must_match_columns():
    with pytest.raises(DataError, match="3 item ids for 10 item columns"):
        fit_cholesky(sp.random(20, 10, density=0.3, format="csr"), item_ids=np.arange(3))


# ---- the sparse route --------------------------------------------------------------------------------


def reference_incomplete_cholesky(P: np.ndarray, beta: float, candidates: int | None, k: int | None) -> np.ndarray:
    """The sparse route's factor by its definition, in float64 numpy: row i keeps the ``candidates`` largest
    |P[i, :i]|, solves against the rows above on those columns only, takes its pivot from every value it
    computed, then keeps its diagonal and k - 1 largest others."""
    n = P.shape[0]
    L = np.zeros((n, n))
    for i in range(n):
        lower = np.abs(P[i, :i])
        cols = np.arange(i) if candidates is None or candidates >= i else np.sort(
            np.argsort(-lower, kind="stable")[:candidates])
        cols = cols[P[i, cols] != 0]
        row = np.zeros(n)
        for j in cols:
            row[j] = (-P[i, j] - L[j, :j] @ row[:j]) / L[j, j]
        pivot = np.sqrt((beta - 1.0) * P[i, i] - row @ row)
        if k is not None and len(cols) > k - 1:
            drop = cols[np.argsort(-np.abs(row[cols]), kind="stable")[k - 1:]]
            row[drop] = 0.0
        row[i] = pivot
        L[i] = row
    return L


def test_incomplete_cholesky_follows_its_definition_and_without_cuts_is_the_cholesky_factor():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((40, 12))
    P = np.linalg.inv(A.T @ A + 0.5 * np.eye(12))
    C = sp.csr_matrix(np.tril(P, -1))
    exact = incomplete_cholesky(C, np.diag(P), 4.0, None).toarray()
    assert np.allclose(exact @ exact.T, 4.0 * np.diag(np.diag(P)) - P, atol=1e-12)
    for candidates, k in ((4, 3), (11, 2), (6, None), (None, 1)):
        C = lower_rows_of_dense(P, candidates)
        got = incomplete_cholesky(C, np.diag(P), 4.0, k).toarray()
        assert np.allclose(got, reference_incomplete_cholesky(P, 4.0, candidates, k), atol=1e-12)


def lower_rows_of_dense(P: np.ndarray, candidates: int | None) -> sp.csr_matrix:
    n = P.shape[0]
    C = np.zeros_like(P)
    for i in range(n):
        keep = np.arange(i) if candidates is None or candidates >= i else np.argsort(-np.abs(P[i, :i]),
                                                                                     kind="stable")[:candidates]
        C[i, keep] = P[i, keep]
    return sp.csr_matrix(C)


def test_incomplete_cholesky_reports_the_row_where_beta_d_minus_p_is_indefinite():
    P = np.array([[1.0, 0.9], [0.9, 1.0]])
    assert incomplete_cholesky(sp.csr_matrix(np.tril(P, -1)), np.diag(P), 1.5, None) == 1
    assert not isinstance(incomplete_cholesky(sp.csr_matrix(np.tril(P, -1)), np.diag(P), 2.0, None), int)


@pytest.mark.parametrize("candidates", [None, 3, 7])
def test_lower_rows_keep_the_largest_entries_of_each_row_of_w_t_d_inv_w(candidates):
    rng = np.random.default_rng(8)
    W = sp.random(30, 25, density=0.2, random_state=3, format="csr") + sp.eye(30, 25)
    D = rng.uniform(0.5, 2.0, 30)
    perm = rng.permutation(25)
    P = (W.T @ sp.diags(1.0 / D) @ W).toarray()[np.ix_(perm, perm)]
    C, diag = lower_rows(sp.csr_matrix(W), D, perm, candidates)
    assert np.allclose(diag, np.diag(P))
    assert np.allclose(C.toarray(), lower_rows_of_dense(P, candidates).toarray())
    assert C.has_sorted_indices


def test_sparse_route_at_full_density_equals_the_dense_route():
    X = random_interactions(300, 45, density=0.15, seed=12)
    dense = fit_cholesky(X, l2=5.0, k=None, route="dense", dtype="float64")
    sparse = fit_cholesky(X, l2=5.0, k=None, route="sparse", inverse_nnz_per_item=45, factorizer="cholmod")
    assert sparse.params["route"] == "sparse" and dense.params["route"] == "dense"
    # SANSA's inverse at full density is exact up to UMR's residual (1 scan, 5 steps: 1.5e-3 relative here)
    scale = np.abs(dense.embeddings.toarray()).max()
    assert np.abs(dense.embeddings.toarray() - sparse.embeddings.toarray()).max() < 5e-3 * scale
    assert np.allclose(dense.priors, sparse.priors, rtol=5e-3)
    ease = X @ dense_ease(X, 5.0)
    unseen = X.toarray() == 0
    assert np.abs(sparse.dense_scores(X) - ease)[unseen].max() < 5e-3 * np.abs(ease).max()


def test_sparse_route_rows_hold_at_most_k_and_rank_like_the_dense_route_at_every_k():
    X = random_interactions(400, 60, density=0.1, seed=13)
    ease = X @ dense_ease(X, 5.0)
    seen = X.toarray() != 0
    ease[seen] = -np.inf

    def overlap(factors) -> float:  # of the top 10 with dense EASE's, unseen items
        scores = factors.dense_scores(X)
        scores[seen] = -np.inf
        top = [np.argsort(-S, axis=1, kind="stable")[:, :10] for S in (ease, scores)]
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(*top)])

    for k in (6, 12, 20):
        sparse = fit_cholesky(X, l2=5.0, k=k, route="sparse", inverse_nnz_per_item=60, factorizer="cholmod")
        assert np.diff(sparse.embeddings.indptr).max() <= k
        assert abs(overlap(sparse) - overlap(fit_cholesky(X, l2=5.0, k=k, route="dense"))) < 0.05


def test_route_auto_takes_the_dense_route_within_the_budget_and_the_sparse_one_above():
    n = 1000
    need = dense_bytes(n) / 2**30
    route, why = choose_route(n, "auto", need * 1.01)
    assert route == "dense" and "within the memory budget" in why
    route, why = choose_route(n, "auto", need * 0.99)
    assert route == "sparse" and "over the memory budget" in why
    assert choose_route(n, "dense", 1e-9) == ("dense", "chosen by the user")
    X = random_interactions(200, 40, seed=14)
    factors = fit_cholesky(X, l2=5.0, k=8, memory_budget_gib=1e-6)
    assert factors.params["route"] == "sparse" and "over the memory budget" in factors.params["route_reason"]
    assert fit_cholesky(X, l2=5.0, k=8).params["route"] == "dense"


def test_sparse_route_errors_say_what_to_do():
    X = random_interactions(200, 40, seed=15)
    with pytest.raises(SparseIdxError, match=r"^beta D_P - P is not positive definite at beta=1.001; use --beta auto"):
        fit_cholesky(X, l2=5.0, beta=1.001, route="sparse", factorizer="cholmod")
    with pytest.raises(SparseIdxError, match="sparse route cannot use order 'cooccurrence'"):
        fit_cholesky(X, l2=5.0, order="cooccurrence", memory_budget_gib=1e-6)
    with pytest.raises(SparseIdxError, match=r"not from a Gram matrix: call fit\(X\)"):
        Cholesky(route="sparse").fit_gram(X.T @ X, np.ones(40))
