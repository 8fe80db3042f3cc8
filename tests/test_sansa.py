"""SANSA against dense EASE, and its factorizers and UMR inverse on their own."""

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import dense_ease, random_interactions, residual_loss, write_lines
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseidx import Index
from sparseidx.errors import DataError
from sparseidx.models._gram import gram_lower
from sparseidx.models._icf import incomplete_cholesky, scaled_gramian
from sparseidx.models import _umr
from sparseidx.models._umr import column_residuals, residual, sparsify_global, umr_inverse
from sparseidx.models.sansa import fit_sansa
from sparseidx_cli.main import cli


def column_scaled(X):
    """X with column j divided by ||(X^T X)_j||^(1/2): the data the ICF route fits (as the paper's code)."""
    G = (X.T @ X).toarray()
    da = np.sqrt(np.linalg.norm(G, axis=0))
    da[da == 0] = 1.0
    return sp.csr_matrix(X.toarray() / da[None, :])


def reference_ease(X, l2, factorizer):
    return dense_ease(column_scaled(X) if factorizer == "icf" else X, l2)


def test_scaled_gramian_equals_the_dense_formula_with_an_untouched_item():
    X = random_interactions(40, 12, seed=3).tolil()
    X[:, 5] = 0  # an item nobody touched
    X = sp.csr_matrix(X)
    A, s = scaled_gramian(X, 7.0)
    G = (X.T @ X).toarray()
    da = np.sqrt(np.linalg.norm(G, axis=0))
    da[da == 0] = 1.0
    M = G / np.outer(da, da) + 7.0 * np.eye(12)
    S = np.diag(1.0 / np.sqrt(np.diag(M)))
    np.testing.assert_allclose(s, np.diag(S), rtol=1e-6)
    np.testing.assert_allclose(A.toarray(), np.tril(S @ M @ S), rtol=1e-5, atol=1e-7)
    assert np.all(A.diagonal() == 1.0)


@settings(max_examples=60, deadline=None)
@given(n_users=st.integers(0, 60), n_items=st.integers(1, 40), density=st.floats(0.0, 0.5), seed=st.integers(0, 99))
def test_gram_lower_triangle_equals_the_dense_product(n_users, n_items, density, seed):
    rng = np.random.default_rng(seed)
    X = sp.random(n_users, n_items, density=density, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.integers(1, 4, k).astype(np.float64))  # weights, not only 1
    G, norms_sq = gram_lower(X)
    dense = (X.T @ X).toarray()
    assert G.has_sorted_indices and G.indices.dtype == np.int32 and G.data.dtype == np.float32
    np.testing.assert_array_equal(G.toarray(), np.tril(dense))
    assert G.nnz == np.count_nonzero(np.tril(dense))
    np.testing.assert_allclose(norms_sq, (dense ** 2).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("chunk, max_nnz", [(3, 300), (1000, 300), (2, 90), (1000, 90)])
def test_a_step_in_chunks_equals_the_dense_step_then_the_global_top(monkeypatch, chunk, max_nnz):
    """One minimal-residual step on some columns, then the largest max_nnz entries (diagonal kept), in numpy.

    With 90 entries, the chunks of 2 columns fill more than the room and entries are dropped early."""
    monkeypatch.setattr(_umr, "UPDATE_CHUNK", chunk)
    X, L = unit_lower_factor(40, seed=5)
    K = _umr.sparsify_global(sp.csc_matrix(2 * sp.identity(40, format="csc") - L), max_nnz)
    cols = np.array([2, 5, 6, 17, 30, 31, 39])
    Ld, Kd = L.toarray(), K.toarray()
    R = np.eye(40)[:, cols] - Ld @ Kd[:, cols]
    P = Ld @ R
    pp = (P * P).sum(axis=0)
    assert (pp > 0).sum() >= 4  # most of the columns take a real step
    Kd[:, cols] += R * np.divide((R * P).sum(axis=0), pp, out=np.zeros(len(cols)), where=pp > 0)
    mags = np.abs(Kd)
    mags[np.diag_indices(40)] = np.inf
    cut = np.sort(mags[mags > 0])[::-1][max_nnz - 1]
    expected = np.where(mags >= cut, Kd, 0.0)
    got = _umr._update(L, K, cols, max_nnz)
    assert got.nnz == max_nnz
    np.testing.assert_allclose(got.toarray(), expected, rtol=1e-12, atol=1e-15)


def test_changed_columns_are_exactly_the_columns_with_a_different_entry():
    A = sp.csc_matrix(np.array([[1.0, 0, 2], [0, 3, 0], [4, 0, 5]]))
    B = sp.csc_matrix(np.array([[1.0, 0, 2], [0, 3, 1e-300], [4, 0, 0]]))
    assert _umr.changed_columns(A, B).tolist() == [2]
    assert _umr.changed_columns(A, A.copy()).tolist() == []


def test_column_residuals_equal_the_dense_residual_norms():
    rng = np.random.default_rng(4)
    n = 70
    L = sp.csc_matrix(sp.tril(sp.random(n, n, density=0.1, random_state=rng), k=-1) + sp.identity(n))
    keep = np.ones(n)
    keep[3] = 0  # a column of K with no entry: its residual is e_3 - 0
    K = sp.csc_matrix(sp.random(n, n, density=0.08, random_state=rng) @ sp.diags(keep))
    K.eliminate_zeros()
    R = np.eye(n) - L.toarray() @ K.toarray()
    np.testing.assert_allclose(column_residuals(L, K), (R ** 2).sum(axis=0), rtol=1e-12)
    assert column_residuals(L, K)[3] == 1.0
    cols = np.array([69, 3, 10, 11])
    np.testing.assert_allclose(column_residuals(L, K, cols), (R[:, cols] ** 2).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("factorizer", ["cholmod", "icf"])
def test_full_density_matches_dense_ease_on_unseen_items(factorizer):
    X = random_interactions(200, 40, density=0.15, seed=1)
    B = reference_ease(X, 5.0, factorizer)
    f = fit_sansa(X, l2=5.0, factorizer=factorizer, density=1.0, scans=3, finetune_steps=10)
    H = sp.csr_matrix(X[:30])
    ref, got = H.toarray() @ B, f.dense_scores(H)
    unseen = H.toarray() == 0
    assert np.abs(got[unseen] - ref[unseen]).max() < 1e-5 * np.abs(ref).max()
    assert f.params["factorizer"] == factorizer and (f.priors == 1).all()


@pytest.mark.parametrize("factorizer", ["cholmod", "icf"])
def test_ranking_approaches_ease_as_density_grows(factorizer):
    X = random_interactions(300, 60, density=0.1, seed=2)
    B = reference_ease(X, 10.0, factorizer)
    H = sp.csr_matrix(X[:50])
    ref = H.toarray() @ B
    ref[H.toarray() != 0] = -np.inf
    top_ref = np.argsort(-ref, axis=1)[:, :10]
    overlaps = []
    for density in (0.1, 0.2, 0.5):
        f = fit_sansa(X, l2=10.0, factorizer=factorizer, density=density)
        assert f.params["nnz_inverse"] <= f.params["target_nnz"] and f.params["nnz_factor"] <= f.params["target_nnz"]
        got = f.dense_scores(H)
        got[H.toarray() != 0] = -np.inf
        top = np.argsort(-got, axis=1)[:, :10]
        overlaps.append(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(top_ref, top)]))
    # a random top 10 of 60 items overlaps by about 0.17
    assert overlaps == sorted(overlaps) and overlaps[0] > 0.4 and overlaps[-1] > 0.75


def unit_lower_factor(n_items, seed):
    """(X, the complete unit lower-triangular factor of X^T X + 3 I) for 150 random users."""
    X = random_interactions(150, n_items, density=0.1, seed=seed)
    L = incomplete_cholesky((X.T @ X + 3.0 * sp.identity(n_items)).tocsc(), budget=n_items - 1)
    return X, sp.csc_matrix(L @ sp.diags(1 / L.diagonal()))


def test_umr_reduces_the_residual_monotonically_on_a_fixed_pattern():
    X, L = unit_lower_factor(50, seed=3)
    K, losses = umr_inverse(L, max_nnz=50 * 50, scans=3, finetune_steps=8)
    assert all(b <= a + 1e-15 for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 1e-3 * losses[0]
    assert np.allclose(K.toarray(), np.linalg.inv(L.toarray()), atol=1e-4)


def test_incomplete_cholesky_is_exact_with_a_full_budget_and_bounded_otherwise():
    X = random_interactions(120, 30, density=0.2, seed=4)
    A = (X.T @ X + 2.0 * sp.identity(30)).tocsc()
    L = incomplete_cholesky(A, budget=29).toarray()
    assert np.allclose(L @ L.T, A.toarray(), atol=1e-8) and np.allclose(L, np.tril(L))
    Lb = incomplete_cholesky(A, budget=3)
    assert (np.diff(Lb.indptr) <= 4).all()


def test_icf_breakdown_is_reported_and_fit_restarts_with_a_shift(caplog):
    # an indefinite matrix breaks down at its second pivot
    A = sp.csc_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert incomplete_cholesky(A, budget=1) == 1
    # a factor kept to one entry per column on a strongly coupled Gram matrix loses positive definiteness
    rng = np.random.default_rng(5)
    base = (rng.random((400, 1)) < 0.5).astype(float)
    X = sp.csr_matrix(np.hstack([base] * 30) + (rng.random((400, 30)) < 0.02))
    with caplog.at_level("WARNING"):
        f = fit_sansa(X, l2=1e-3, factorizer="icf", nnz_per_item=2)
    assert "restarting with shift" in caplog.text and f.params["icf_shift"] > 0


def test_items_nobody_touched_and_empty_users_are_handled():
    X = random_interactions(100, 30, density=0.15, seed=6).toarray()
    X[:, [3, 17]] = 0.0
    X[:5] = 0.0
    f = fit_sansa(sp.csr_matrix(X), l2=5.0, factorizer="icf", density=0.3)
    scores = f.dense_scores(sp.csr_matrix(X[5:20]))
    assert np.isfinite(scores).all() and np.allclose(scores[:, [3, 17]], 0.0, atol=1e-6)


def test_predicted_factor_size_equals_cholmod_numeric_factor():
    from sksparse import cholmod

    from sparseidx.models.sansa import predicted_factor_nnz

    for seed in range(3):
        X = sp.csr_matrix(random_interactions(150, 70, density=0.05, seed=seed), dtype=np.float64)
        factor = cholmod.analyze_AAt(sp.csc_matrix(X.T), mode="simplicial", ordering_method="colamd")
        factor.cholesky_AAt_inplace(sp.csc_matrix(X.T), beta=1.0)
        L = factor.L()
        assert predicted_factor_nnz(X) == L.nnz


def test_sparsify_global_keeps_the_diagonal_and_the_largest_entries():
    M = sp.csc_matrix(np.array([[5.0, 0, 0], [0.1, 0.01, 0], [-3.0, 0.2, 1.0]]))
    kept = sparsify_global(M, 4).toarray()
    assert np.array_equal(kept, np.array([[5.0, 0, 0], [0, 0.01, 0], [-3.0, 0, 1.0]]))
    ties = sp.csc_matrix(np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0.5, 0.5, 1.0]]))
    assert sparsify_global(ties, 4).nnz == 4  # exactly the budget, even with equal magnitudes


def test_residual_loss_definition():
    L = sp.csc_matrix(np.array([[1.0, 0], [0.5, 1.0]]))
    value, sq = residual_loss(residual(L, sp.identity(2, format="csc")))
    assert np.isclose(value, 0.125) and np.allclose(sq, [0.25, 0.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"factorizer": "lu"}, "factorizer must be one of auto, cholmod, icf, got 'lu'"),
    ({"l2": 0}, "l2 must be a finite number > 0, got 0"),
    ({"density": 1e-3, "nnz_per_item": 5}, "not both"),
    ({"density": 2.0}, r"density must be a finite number in \(0, 1\]"),
    ({"nnz_per_item": 0}, "nnz_per_item must be an integer >= 1 or None, got 0"),
    ({"scans": -1}, "scans must be an integer >= 0, got -1"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(DataError, match=message):
        fit_sansa(random_interactions(30, 10), **kwargs)


def test_auto_chooses_and_says_why_and_cli_builds_and_queries(tmp_path):
    X = random_interactions(120, 40, seed=7)
    f = fit_sansa(X, l2=5.0)
    assert f.params["factorizer"] in ("cholmod", "icf") and "non-zeros" in f.params["factorizer_reason"]
    write_lines(tmp_path / "train.txt", X)
    runner = CliRunner()
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "sansa", "--factorizer", "icf",
                              "--nnz-per-item", "10", "--l2", "5", "--out", str(tmp_path / "s.idx")])
    assert res.exit_code == 0, res.output
    index = Index.open(tmp_path / "s.idx")
    assert index.manifest["params"]["factorizer"] == "icf"
    ref = fit_sansa(X, l2=5.0, factorizer="icf", nnz_per_item=10)
    Q = sp.csr_matrix(X[:10])
    _, ids = index.search(Q, 5, threads=1)
    all_scores = ref.dense_scores(Q)
    all_scores[Q.toarray() != 0] = -np.inf
    assert np.allclose(np.take_along_axis(all_scores, ids, 1), -np.sort(-all_scores, axis=1)[:, :5], atol=1e-5)
    res = runner.invoke(cli, ["info", str(tmp_path / "s.idx")])
    assert "params.nnz_inverse" in res.output and "params.factorizer_reason" in res.output


def test_large_catalogues_order_by_popularity_and_auto_picks_icf(monkeypatch):
    from sparseidx.models import sansa

    X = random_interactions(120, 40, seed=5)
    assert fit_sansa(X, l2=5.0, factorizer="icf", density=1.0).params["ordering"] == "colamd"
    monkeypatch.setattr(sansa, "COLAMD_MAX_ITEMS", 30)
    p, name = sansa.icf_ordering(sp.csr_matrix(X))
    counts = np.asarray(X.sum(axis=0)).ravel()
    assert name.startswith("popularity") and sorted(p) == list(range(40)) and np.all(np.diff(counts[p]) >= 0)
    f = fit_sansa(X, l2=5.0, density=1.0, scans=3, finetune_steps=10)
    assert f.params["factorizer"] == "icf" and "over 30" in f.params["factorizer_reason"]
    assert f.params["ordering"].startswith("popularity")
    # the ordering changes the route, not the model: at full density the ranking is the column-scaled EASE's
    ref = reference_ease(sp.csr_matrix(X), 5.0, "icf")
    Q = sp.csr_matrix(X[:20])
    got = f.dense_scores(Q)
    want = Q.toarray() @ ref
    mask = Q.toarray() == 0
    assert np.corrcoef(got[mask], want[mask])[0, 1] > 0.99


def test_auto_decides_from_the_stated_budget_not_the_free_memory(monkeypatch, caplog):
    from sparseidx.models import _memory, sansa

    X = sp.csr_matrix(random_interactions(120, 40, seed=7), dtype=np.float64)
    need = sansa.predicted_factor_nnz(X) * 12 / 2**30
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1)  # the machine's free memory plays no part
    with caplog.at_level("INFO"):
        f = fit_sansa(X, l2=5.0, memory_budget_gib=2 * need)
    assert f.params["factorizer"] == "cholmod" and f.params["memory_budget_gib"] == 2 * need
    assert "within the memory budget" in f.params["factorizer_reason"] and "SANSA factorizer: cholmod" in caplog.text
    f = fit_sansa(X, l2=5.0, memory_budget_gib=need / 2)
    assert f.params["factorizer"] == "icf" and "over the memory budget" in f.params["factorizer_reason"]
    assert fit_sansa(X, l2=5.0).params["memory_budget_gib"] == sansa.DEFAULT_BUDGET_GIB
    with pytest.raises(DataError, match="memory_budget_gib must be a finite number > 0"):
        fit_sansa(X, memory_budget_gib=0)


def test_finetune_width_reference_is_sansa_11s_and_wide_is_the_scan_block(monkeypatch):
    from sparseidx.models import sansa

    assert sansa.finetune_width("reference", 24915, 310_000) == 13  # ceil(n x nnz(L) / n^2), as sansa 1.1
    assert sansa.finetune_width("wide", 24915, 310_000) == 250 and sansa.finetune_width("wide", 500, 9) == 64
    assert sansa.finetune_width(7, 5, 9) == 5
    widths = []
    real = sansa.umr_inverse
    monkeypatch.setattr(sansa, "umr_inverse", lambda *a, **k: widths.append(k["finetune_width"]) or real(*a, **k))
    X = random_interactions(200, 80, density=0.1, seed=8)
    f = fit_sansa(X, l2=5.0, factorizer="cholmod", density=0.05, finetune_width="reference")
    assert widths == [int(np.ceil(f.params["nnz_factor"] / 80))] == [f.params["finetune_columns"]]
    assert f.params["finetune_width"] == "reference"
    with pytest.raises(DataError, match="finetune_width must be an integer >= 1 or 'wide' or 'reference'"):
        fit_sansa(X, finetune_width="narrow")


def test_finetune_updates_exactly_the_worst_width_columns():
    X, L = unit_lower_factor(60, seed=9)
    K0, _ = umr_inverse(L, max_nnz=60 * 60, scans=0, finetune_steps=0)
    K1, losses = umr_inverse(L, max_nnz=60 * 60, scans=0, finetune_steps=1, finetune_width=3)
    sq = residual_loss(residual(L, K0))[1]
    worst = np.argsort(-np.sqrt(sq) / np.sqrt(np.arange(60, 0, -1)))[:3]
    changed = np.flatnonzero(np.abs(K1 - K0).max(axis=0).toarray().ravel() > 0)
    assert sorted(changed) == sorted(worst) and losses[-1] < losses[0]
