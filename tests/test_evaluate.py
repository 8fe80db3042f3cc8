"""Ranking metrics (BARS and Liang definitions), evaluation on a split and on held-out users."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import brute_force_topk, random_factors, random_interactions, write_lines

from sparseidx import Index, evaluate
from sparseidx.errors import DataError
from sparseidx.evaluate import evaluate_heldout, ranking_metrics, split_fold_in
from sparseidx_cli.main import cli


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


def test_liang_recall_divides_by_min_k_and_test_size_by_hand():
    ids = np.array([[3, 1, 7, 2], [5, 6, 8, -1]])
    test = sp.csr_matrix((np.ones(4), ([0, 0, 0, 1], [1, 2, 9, 8])), shape=(2, 10))
    m = ranking_metrics(ids, test, ks=(2, 4), recall="liang")
    # user 0: 1 hit in the top 2, 2 in the top 4, |test| = 3; user 1: 1 hit at rank 3, |test| = 1
    assert np.allclose(m["recall@2"], [1 / 2, 0.0]) and np.allclose(m["recall@4"], [2 / 3, 1.0])
    bars = ranking_metrics(ids, test, ks=(2, 4))
    assert all(np.array_equal(m[k], bars[k]) for k in m if not k.startswith("recall"))
    with pytest.raises(DataError, match="recall definition 'x' is unknown"):
        ranking_metrics(ids, test, recall="x")


def test_fold_in_split_by_hand():
    X = sp.csr_matrix(np.array([[1] * 5 + [0] * 5, [1] * 4 + [0] * 6, [1] * 10]), dtype=np.float32)
    hist, test = split_fold_in(X, 0.8, seed=0)
    # ceil(0.8 n) folded in: 5 -> 4 + 1, 4 -> 4 + 0 (fewer than 5 items: no test item), 10 -> 8 + 2
    assert list(np.diff(hist.indptr)) == [4, 4, 8] and list(np.diff(test.indptr)) == [1, 0, 2]
    assert (hist + test - X).nnz == 0 and hist.multiply(test).nnz == 0
    again, _ = split_fold_in(X, 0.8, seed=0)
    assert (again != hist).nnz == 0 and (split_fold_in(X, 0.8, seed=1)[0] != hist).nnz > 0


def test_heldout_users_protocol_matches_brute_force(tmp_path):
    H = random_interactions(40, 30, density=0.3, seed=4)
    write_lines(tmp_path / "heldout.txt", H)
    f = random_factors(2, 30, 12, 0.3)
    f.item_ids = np.arange(30)
    index = Index.build(f)
    result = evaluate_heldout(index, tmp_path / "heldout.txt", fold_in=0.8, seed=3, ks=(5,), recall="liang")
    hist, test = split_fold_in(H, 0.8, seed=3)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    _, ref_ids = brute_force_topk(f.dense_scores(hist[users]), hist[users], 5)
    ref = ranking_metrics(ref_ids, test[users], ks=(5,), recall="liang")
    for name, vals in ref.items():
        assert result[name] == pytest.approx(vals.mean(), abs=1e-9), name
    assert result["users"] == len(users) and result["recall_definition"] == "liang" and result["fold_in"] == 0.8


def test_evaluate_cli_heldout_users_and_recall_definition(tmp_path):
    H = random_interactions(40, 30, density=0.3, seed=4)
    write_lines(tmp_path / "heldout.txt", H)
    f = random_factors(2, 30, 12, 0.3)
    f.item_ids = np.arange(30)
    Index.build(f).write(tmp_path / "i.idx")
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "i.idx"), "--heldout-users", str(tmp_path / "heldout.txt"),
                              "--seed", "3", "-k", "5", "--recall-definition", "liang", "--json"])
    assert res.exit_code == 0, res.output
    want = evaluate_heldout(Index.open(tmp_path / "i.idx"), tmp_path / "heldout.txt", seed=3, ks=(5,), recall="liang")
    assert json.loads(res.output)["recall@5"] == pytest.approx(want["recall@5"])
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "i.idx"), "--heldout-users", str(tmp_path / "heldout.txt"),
                              "--train", str(tmp_path / "heldout.txt")])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "i.idx"), "--train", str(tmp_path / "heldout.txt")])
    assert res.exit_code == 2 and "--heldout-users FILE" in res.output


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
