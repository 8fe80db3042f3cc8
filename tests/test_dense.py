"""The FAISS backend and the dense low-rank models against numpy brute force."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import brute_force_topk, random_interactions, write_lines
from helpers import random_histories

from sparseidx import Index
from sparseidx.errors import DataError, IndexFormatError
from sparseidx.factors import DenseFactors
from sparseidx.index.dense import DenseIndex
from sparseidx.models.cholesky import fit_cholesky
from sparseidx.models.lowrank import fit_cholesky_lowrank, fit_puresvd, truncated_svd
from sparseidx_cli.main import cli


def dense_factors(seed=0, n_items=60, dims=8, popularity=True):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n_items, dims))
    V = rng.normal(size=(n_items, dims))
    pop = rng.integers(0, 50, n_items) if popularity else None
    return DenseFactors(encoder=E, embeddings=V, priors=rng.uniform(0.5, 2.0, n_items),
                        item_ids=np.arange(n_items) + 1000, popularity=pop)


@pytest.mark.parametrize("k", [1, 7, 59, 80])
def test_flat_equals_numpy_brute_force_with_history_masked(k):
    f = dense_factors()
    Q = random_histories(0, 12, 60, 5)
    scores, ids = DenseIndex.build(f, "Flat").search(Q, k, threads=1)
    all_scores = f.dense_scores(Q)
    ref_scores, ref_ids = brute_force_topk(all_scores, Q, k)
    assert np.array_equal(ids < 0, ref_ids < 0)
    valid = ids >= 0
    assert np.allclose(scores[valid], ref_scores[valid], rtol=1e-4, atol=1e-4)
    assert np.allclose(scores[valid], all_scores[np.nonzero(valid)[0], ids[valid]], rtol=1e-4, atol=1e-4)
    assert not (Q.toarray()[np.nonzero(valid)[0], ids[valid]] != 0).any()
    assert np.isneginf(scores[~valid]).all()


def test_dense_and_sparse_indexes_answer_the_same_contract():
    X = random_interactions(90, 40, seed=3)
    sparse = Index.build(fit_cholesky(X, l2=5.0, k=None))
    dense = DenseIndex.build(fit_cholesky_lowrank(X, dims=40, l2=5.0))
    histories = [[0, 3], [], [5]]
    for index in (sparse, dense):
        res = index.search_detailed(histories, 50, threads=1)
        assert res.scores.dtype == np.float32 and res.ids.dtype == np.int64
        assert res.scores.shape == res.ids.shape == (3, 40)  # k capped at the catalogue
        assert res.popular.tolist() == [False, True, False]
        assert (res.ids[0, :38] >= 0).all() and (res.ids[0, 38:] == -1).all()  # 40 items - 2 in the history
        assert not np.isin([0, 3], res.ids[0]).any()
    # full rank: the dense counterpart ranks exactly like the sparse Cholesky index
    s_scores, s_ids = sparse.search(histories, 10, threads=1)
    d_scores, d_ids = dense.search(histories, 10, threads=1)
    assert np.allclose(s_scores, d_scores, rtol=2e-3, atol=2e-3)


def test_cholesky_lowrank_at_full_rank_equals_the_full_model_on_unseen_items():
    X = random_interactions(100, 30, seed=5)
    full = fit_cholesky(X, l2=3.0, k=None)
    low = fit_cholesky_lowrank(X, dims=30, l2=3.0)
    H = sp.csr_matrix(X[:20])
    a, b = full.dense_scores(H), low.dense_scores(H)
    unseen = H.toarray() == 0
    assert np.allclose(a[unseen], b[unseen], rtol=1e-3, atol=1e-3 * np.abs(a).max())
    assert np.allclose(low.priors, full.priors)


def test_truncated_svd_matches_numpy_svd():
    X = random_interactions(70, 35, density=0.2, seed=2)
    S, W = truncated_svd(X, 6, seed=1)
    _, S_ref, Wt_ref = np.linalg.svd(X.toarray().astype(np.float64))
    assert np.allclose(S, S_ref[:6], rtol=1e-4)
    # singular vectors up to sign
    assert np.allclose(np.abs(np.sum(W * Wt_ref[:6].T, axis=0)), 1.0, atol=1e-3)


def test_puresvd_scores_are_the_projection_on_top_singular_vectors():
    X = random_interactions(70, 35, density=0.2, seed=4)
    f = fit_puresvd(X, dims=5, seed=0)
    _, _, Wt = np.linalg.svd(X.toarray().astype(np.float64))
    W = Wt[:5].T
    H = sp.csr_matrix(X[:10])
    # randomized SVD: the top-5 subspace agrees to ~1e-4 per entry on this small, flat spectrum
    assert np.allclose(f.dense_scores(H), H.toarray() @ W @ W.T, atol=2e-3)
    assert f.model == "puresvd" and (f.priors == 1).all()


@pytest.mark.parametrize("spec, knob", [("HNSW16,Flat", {"ef_search": 64}), ("IVF4,Flat", {"nprobe": 4})])
def test_approximate_indexes_with_generous_knobs_find_the_exact_answer(spec, knob):
    f = dense_factors(7, n_items=200, dims=6)
    Q = random_histories(7, 20, 200, 4)
    _, exact = DenseIndex.build(f, "Flat").search(Q, 5, threads=1)
    _, ids = DenseIndex.build(f, spec).search(Q, 5, threads=1, **knob)
    recall = np.mean([len(np.intersect1d(a, b)) / 5 for a, b in zip(ids, exact)])
    assert recall >= 0.95


@pytest.mark.parametrize("spec", ["Flat", "HNSW16,Flat", "IVF4,Flat"])
def test_write_open_round_trip(tmp_path, spec):
    f = dense_factors(2)
    index = DenseIndex.build(f, spec)
    index.write(tmp_path / "d.idx")
    back = Index.open(tmp_path / "d.idx")
    assert isinstance(back, DenseIndex) and back.spec == spec
    assert np.array_equal(back.encoder, f.encoder) and np.array_equal(back.item_ids, f.item_ids)
    Q = random_histories(2, 5, 60, 3)
    a, b = index.search(Q, 10, threads=1), back.search(Q, 10, threads=1)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert Index.verify(tmp_path / "d.idx") == []
    manifest = json.loads((tmp_path / "d.idx" / "manifest.json").read_text())
    assert manifest["backend"] == "faiss" and "vectors.faiss" in manifest["files"]


def test_threads_give_identical_results():
    f = dense_factors(3, n_items=300)
    Q = random_histories(3, 50, 300, 6)
    index = DenseIndex.build(f, "Flat")
    one, two = index.search(Q, 10, threads=1), index.search(Q, 10, threads=2)
    assert np.array_equal(one[1], two[1])


def test_tampered_or_missing_faiss_file_is_refused(tmp_path):
    DenseIndex.build(dense_factors()).write(tmp_path / "d.idx")
    path = tmp_path / "d.idx" / "vectors.faiss"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="SHA-256"):
        Index.open(tmp_path / "d.idx")
    path.unlink()
    with pytest.raises(IndexFormatError, match="vectors.faiss: missing"):
        Index.open(tmp_path / "d.idx")


@pytest.mark.parametrize("spec, options, message", [
    ("Flat", {"ef_search": 10}, "--ef-search applies to HNSW"),
    ("Flat", {"nprobe": 2}, "--nprobe applies to IVF"),
    ("HNSW16,Flat", {"ef_search": 10, "nprobe": 2}, "not both"),
    ("Flat", {"query_dims": 3}, "--query-dims applies to sparse indexes"),
    ("Flat", {"prune": 0.1}, "--prune applies to sparse indexes"),
    ("Flat", {"k": 0}, "k must be a positive integer"),
])
def test_bad_search_options(spec, options, message):
    index = DenseIndex.build(dense_factors(), spec)
    k = options.pop("k", 5)
    with pytest.raises(DataError, match=message):
        index.search([[1000]], k, **options)


def test_bad_factory_strings_and_models():
    with pytest.raises(DataError, match="FAISS cannot build 'Nope42'"):
        DenseIndex.build(dense_factors(), "Nope42")
    with pytest.raises(DataError, match="asks for 1000 IVF lists but there are only 60 items"):
        DenseIndex.build(dense_factors(), "IVF1000,Flat")
    with pytest.raises(DataError, match="dims must be between 1 and"):
        fit_puresvd(random_interactions(20, 10), dims=11)


def test_cli_build_query_evaluate_on_a_faiss_index(tmp_path):
    X = random_interactions(120, 50, seed=9)
    rng = np.random.default_rng(90)  # another stream than X's, so that T holds items outside the histories
    T = sp.csr_matrix((rng.random(X.shape) < 0.05) & (X.toarray() == 0), dtype=np.float32)
    write_lines(tmp_path / "train.txt", X)
    write_lines(tmp_path / "test.txt", T)
    runner = CliRunner()
    out = tmp_path / "svd.idx"
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "puresvd", "--dims", "8",
                              "--faiss-index", "HNSW16,Flat", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["query", str(out), "--history", "0", "1", "-k", "5", "--ef-search", "32", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    assert len(answer["items"]) == 5 and not {0, 1} & {r["item_id"] for r in answer["items"]}
    res = runner.invoke(cli, ["evaluate", str(out), "--train", str(tmp_path / "train.txt"),
                              "--test", str(tmp_path / "test.txt"), "-k", "10", "--json"])
    assert res.exit_code == 0, res.output
    assert 0.0 <= json.loads(res.stdout)["recall@10"] <= 1.0
    res = runner.invoke(cli, ["info", str(out), "--json"])
    assert json.loads(res.stdout)["faiss_index"] == "HNSW16,Flat"
    res = runner.invoke(cli, ["query", str(out), "--history", "0", "--budget", "10"])
    assert res.exit_code == 2 and "applies to sparse indexes" in res.output  # a usage error
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "chol", "--backend", "faiss",
                              "--out", str(tmp_path / "x.idx")])
    assert res.exit_code != 0 and "sparse embeddings" in res.output


def test_batches_mixing_short_and_long_histories_equal_one_query_at_a_time(monkeypatch):
    import sparseidx.index.dense as dense

    monkeypatch.setattr(dense, "FETCH_ENTRIES", 50)  # forces several FAISS calls per history-length group
    f = dense_factors(11, n_items=120)
    rng = np.random.default_rng(11)
    histories = [rng.choice(120, size=s, replace=False) + 1000 for s in (1, 2, 40, 3, 90, 0, 7)]
    index = DenseIndex.build(f, "Flat")
    scores, ids = index.search(histories, 6, threads=1)
    for q, h in enumerate(histories):
        s1, i1 = index.search([h], 6, threads=1)
        assert np.array_equal(ids[q], i1[0]) and np.allclose(scores[q], s1[0])
        assert not np.isin(h - 1000, ids[q]).any()
