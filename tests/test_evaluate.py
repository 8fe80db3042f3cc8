"""Ranking metrics (BARS definitions) and evaluation of an index on a split."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import brute_force_topk, random_interactions, write_lines
from helpers import random_factors

from sparseidx import Index, evaluate
from sparseidx.errors import DataError
from sparseidx.evaluate import ranking_metrics


def test_metrics_by_hand():
    ids = np.array([[3, 1, 7, 2], [5, 6, 8, -1]])
    test = sp.csr_matrix((np.ones(4), ([0, 0, 0, 1], [1, 2, 9, 8])), shape=(2, 10))
    m = ranking_metrics(ids, test, ks=(2, 4))
    # user 0: hits at ranks 2 and 4 of |test| = 3; user 1: hit at rank 3 of |test| = 1
    assert np.allclose(m["recall@4"], [2 / 3, 1.0])
    assert np.allclose(m["recall@2"], [1 / 3, 0.0])
    assert np.allclose(m["precision@4"], [0.5, 0.25])
    d = 1 / np.log2(np.arange(2, 6))
    assert np.allclose(m["ndcg@4"], [(d[1] + d[3]) / d[:3].sum(), d[2] / d[0]])
    assert np.allclose(m["ndcg@2"], [d[1] / d[:2].sum(), 0.0])
    assert np.allclose(m["map@4"], [(1 / 2 + 2 / 4) / 3, (1 / 3) / 1])


def test_test_sizes_override_counts_unrankable_items():
    ids = np.array([[1, 2]])
    test = sp.csr_matrix(np.array([[0, 1, 0]]))
    m = ranking_metrics(ids, test, ks=(2,), test_sizes=np.array([4]))
    assert np.allclose(m["recall@2"], [0.25])


def test_cutoff_longer_than_ranking_is_an_error():
    with pytest.raises(ValueError, match="exceeds the ranking length"):
        ranking_metrics(np.zeros((1, 3), dtype=int), sp.csr_matrix((1, 5)), ks=(5,))


def test_evaluate_matches_brute_force_rankings(tmp_path):
    X = random_interactions(60, 30, seed=2)
    rng = np.random.default_rng(102)
    T = sp.csr_matrix((rng.random((60, 30)) < 0.1) & (X.toarray() == 0), dtype=np.float32)
    write_lines(tmp_path / "train.txt", X)
    write_lines(tmp_path / "test.txt", T)
    f = random_factors(2, 30, 12, 0.3)
    f.item_ids = np.arange(30)
    index = Index.build(f)
    result = evaluate(index, tmp_path / "train.txt", tmp_path / "test.txt", ks=(5, 10))
    users = np.flatnonzero(np.diff(T.indptr) > 0)
    scores = f.dense_scores(X[users])
    _, ref_ids = brute_force_topk(scores, X[users], 10)
    empty = np.diff(X[users].indptr) == 0  # empty histories are answered by popularity
    assert empty.any(), "the data must exercise the popularity fallback"
    ref_ids[empty] = np.lexsort((np.arange(30), -f.popularity))[:10]
    ref = ranking_metrics(ref_ids, T[users], ks=(5, 10))
    for name, vals in ref.items():
        assert result[name] == pytest.approx(vals.mean(), abs=1e-9), name
    assert result["users"] == len(users)
    scores[empty] = 0.0  # popularity answers report no model scores
    assert result["coverage"] == pytest.approx(
        np.mean([(np.abs(s[X[u].toarray().ravel() == 0]) > 0).mean() for u, s in zip(users, scores)]))


def test_unknown_test_items_count_as_misses_and_cold_users_get_popular(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 2 3\n")
    (tmp_path / "test.txt").write_text("0 3 99\n7 1\n")
    f = random_factors(3, 4, 3, 0.9)
    f.item_ids = np.arange(4)
    result = evaluate(Index.build(f), tmp_path / "train.txt", tmp_path / "test.txt", ks=(3,))
    assert result["unknown_test_interactions"] == 1
    assert result["cold_users"] == 1
    assert result["users"] == 2


def test_cold_users_are_answered_by_popularity(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 1 2\n")
    (tmp_path / "test.txt").write_text("7 1 2\n8 3\n")  # users 7 and 8 have no train history
    f = random_factors(3, 4, 3, 0.9)
    f.item_ids = np.arange(4)
    f.popularity = np.array([1, 5, 9, 2])  # ranking by popularity: 2, 1, 3, 0
    result = evaluate(Index.build(f), tmp_path / "train.txt", tmp_path / "test.txt", ks=(2, 3))
    # user 7: hits at ranks 1, 2 of |test| = 2; user 8: a hit at rank 3 of |test| = 1
    d = 1 / np.log2(np.arange(2, 5))
    expected = {"recall@2": (1 + 0) / 2, "recall@3": (1 + 1) / 2, "precision@2": (1 + 0) / 2,
                "precision@3": (2 / 3 + 1 / 3) / 2, "ndcg@2": (1 + 0) / 2, "ndcg@3": (1 + d[2] / d[0]) / 2,
                "map@2": (1 + 0) / 2, "map@3": (1 + 1 / 3) / 2}
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name
    assert result["cold_users"] == 2 and result["users"] == 2


def test_cold_users_need_popularity_counts(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n")
    (tmp_path / "test.txt").write_text("0 2\n7 1\n")
    f = random_factors(3, 4, 3, 0.9, popularity=False)
    f.item_ids = np.arange(4)
    with pytest.raises(DataError, match="1 test users have no train history, and this index has no popularity"):
        evaluate(Index.build(f), tmp_path / "train.txt", tmp_path / "test.txt", ks=(2,))
