"""Cholesky embeddings against dense EASE (float64 numpy) and the paper's construction."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import dense_ease, random_interactions

from sparseidx import fit_cholesky
from sparseidx.errors import DataError, MemoryBudgetError, SparseIdxError
from sparseidx.models.cholesky import ease_weights, item_order

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
    with pytest.raises(MemoryBudgetError, match="use --model sansa"):
        fit_cholesky(X, memory_limit=1000)


@pytest.mark.parametrize("kwargs,message", [
    ({"l2": 0.0}, r"^l2 must be a finite number > 0, got 0.0$"),
    ({"beta": 1.0}, r"^beta must be a finite number > 1 or 'auto', got 1.0$"),
    ({"k": 0}, r"^k must be an integer >= 1 or None, got 0$"),
    ({"k": 2.5}, r"^k must be an integer >= 1 or None, got 2.5$"),
    ({"order": "random"}, r"^order must be one of popularity, cooccurrence, none, got 'random'$"),
    ({"dims": 8}, r"^model 'chol' takes no parameter dims; it takes beta, dtype, k, l2, memory_limit, order$"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(DataError, match=message):
        fit_cholesky(random_interactions(30, 10), **kwargs)


def test_item_ids_must_match_columns():
    with pytest.raises(DataError, match="3 item ids for 10 item columns"):
        fit_cholesky(sp.random(20, 10, density=0.3, format="csr"), item_ids=np.arange(3))
