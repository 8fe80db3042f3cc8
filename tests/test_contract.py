"""One search contract, checked on both backends: options, filters, deny lists, write/open, info.

Every check runs on a sparse index and on an exact FAISS (Flat) index over the same
embeddings, against dense numpy brute force.
"""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import brute_force_topk, random_factors, random_histories, write_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseidx import Index
from sparseidx.errors import DataError, IndexFormatError, UnknownItemError
from sparseidx.factors import DenseFactors
from sparseidx.index import FaissSearchOptions, SparseSearchOptions
from sparseidx.index.deny import set_denied
from sparseidx_cli.main import cli

TOL = 1e-4
BACKENDS = ["sparse", "faiss"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def factors_for(backend, seed=3, n_items=120, n_dims=24, density=0.15):
    """The same embeddings as sparse factors or as dense factors (so both backends rank alike)."""
    f = random_factors(seed, n_items, n_dims, density)
    if backend == "sparse":
        return f
    return DenseFactors(encoder=f.encoder.toarray(), embeddings=f.embeddings.toarray(), priors=f.priors,
                        item_ids=f.item_ids, popularity=f.popularity)


def build(backend, **kw):
    f = factors_for(backend, **kw)
    return Index.build(f, backend=backend), random_factors(kw.get("seed", 3), kw.get("n_items", 120),
                                                           kw.get("n_dims", 24), kw.get("density", 0.15))


def reference(f, Q, k, blocked):
    """Brute-force top-k with the history and a (queries x items) boolean ``blocked`` removed."""
    scores = f.dense_scores(Q)
    removed = sp.csr_matrix((Q.toarray() != 0) | blocked)
    return scores, brute_force_topk(scores, removed, k)


def assert_answers(scores, ids, ref, all_scores):
    ref_scores, ref_ids = ref
    assert np.array_equal(ids < 0, ref_ids < 0)
    valid = ids >= 0
    assert np.allclose(scores[valid], ref_scores[valid], atol=TOL, rtol=TOL)
    rows = np.nonzero(valid)[0]
    assert np.allclose(scores[valid], all_scores[rows, ids[valid]], atol=TOL, rtol=TOL)
    assert np.isneginf(scores[~valid]).all()


def blocked_matrix(n, n_items, exclude_rows, allow_rows, denied=()):
    """Items each query may not return, from per-query lists of internal indices (None: no list)."""
    out = np.zeros((n, n_items), dtype=bool)
    out[:, list(denied)] = True
    for r in range(n):
        if exclude_rows is not None:
            out[r, exclude_rows[r]] = True
        if allow_rows is not None:
            keep = np.zeros(n_items, dtype=bool)
            keep[allow_rows[r]] = True
            out[r] |= ~keep
    return out


# ---- filters against brute force, both backends, shared and per-query lists -----------------
@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(1, 40), shared=st.booleans(), which=st.sampled_from(
    ["exclude", "allow", "both"]), size=st.integers(0, 130))
def test_filtered_search_equals_brute_force_over_the_allowed_items(backend, seed, k, shared, which, size):
    index, f = build(backend)
    n, n_items = 9, index.n_items
    Q = random_histories(seed, n, n_items, 6)
    rng = np.random.default_rng(seed)
    lists = [rng.choice(n_items, size=min(size, n_items), replace=False) for _ in range(1 if shared else n)]
    others = [rng.choice(n_items, size=rng.integers(0, n_items), replace=False) for _ in range(1 if shared else n)]
    ex_rows = al_rows = None
    kwargs = {}
    if which in ("exclude", "both"):
        ex_rows = lists * n if shared else lists
        kwargs["exclude"] = list(f.item_ids[lists[0]]) if shared else [list(f.item_ids[x]) for x in lists]
    if which in ("allow", "both"):
        src = others if which == "both" else lists
        al_rows = src * n if shared else src
        kwargs["allow"] = list(f.item_ids[src[0]]) if shared else [list(f.item_ids[x]) for x in src]
    scores, ids = index.search(Q, k, threads=1, **kwargs)
    all_scores, ref = reference(f, Q, min(k, n_items), blocked_matrix(n, n_items, ex_rows, al_rows))
    assert_answers(scores, ids, ref, all_scores)


@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(1, 30), prune=st.floats(0.0, 0.9), size=st.integers(0, 60),
       many=st.booleans())
def test_pruned_filtered_queries_return_only_allowed_items_and_k_of_them_when_k_exist(seed, k, prune, size, many):
    """Rescoring never runs out of allowed candidates, on both the listed and the block paths."""
    index, f = build("sparse", n_items=300 if many else 120, density=0.4 if many else 0.1)
    n, n_items = 8, index.n_items
    Q = random_histories(seed, n, n_items, 6)
    rng = np.random.default_rng(seed)
    allow = [rng.choice(n_items, size=size, replace=False) for _ in range(n)]
    exclude = [rng.choice(n_items, size=5, replace=False) for _ in range(n)]
    scores, ids = index.search(Q, k, prune=prune, threads=1, allow=[list(f.item_ids[a]) for a in allow],
                               exclude=[list(f.item_ids[e]) for e in exclude])
    blocked = blocked_matrix(n, n_items, exclude, allow) | (Q.toarray() != 0)
    for r in range(n):
        got = ids[r][ids[r] >= 0]
        assert not blocked[r, got].any()
        assert len(got) == min(k, int((~blocked[r]).sum()))
        # the scores returned are the exact scores of those items
        assert np.allclose(scores[r][: len(got)], f.dense_scores(Q[r])[0, got], atol=TOL, rtol=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_histories_get_the_most_popular_items_each_may_return(backend):
    index, f = build(backend)
    order = np.lexsort((np.arange(index.n_items), -f.popularity))
    res = index.search_detailed([[], []], 5, exclude=[[f.item_ids[order[0]]], []],
                                allow=[list(f.item_ids[order[:10]]), list(f.item_ids[order[50:52]])])
    assert res.popular.all()
    assert res.ids[0].tolist() == order[1:6].tolist()
    assert res.ids[1].tolist() == sorted(order[50:52], key=lambda i: (-f.popularity[i], i)) + [-1, -1, -1]
    assert np.array_equal(res.scores[0], f.popularity[order[1:6]].astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_ids_in_filters_are_ignored_and_malformed_filters_refused(backend):
    index, f = build(backend)
    H = [[f.item_ids[0]], [f.item_ids[1]]]
    base = index.search(H, 5)[1]
    assert np.array_equal(index.search(H, 5, exclude=[-5, 10**12])[1], base)
    assert (index.search(H, 5, allow=[-5])[1] == -1).all()  # nothing known is allowed: nothing returned
    assert (index.search(H, 5, allow=[])[1] == -1).all()
    for bad, message in [({"a": 1}, "must be a list"), ("12", "must be a list"), (7, "must be a list"),
                         ([1, [2]], "mixes item ids and lists"), ([[1], [2], [3]], "has 3 lists but there are 2"),
                         ([1.5], "is a float64 value"), ([[[1]], [2]], "not a flat list")]:
        with pytest.raises(DataError, match=message):
            index.search(H, 5, exclude=bad)


def written(tmp_path, backend, name="a.idx"):
    """An index built, written and opened again: (built, factors, path, opened)."""
    index, f = build(backend)
    path = str(tmp_path / name)
    index.write(path)
    return index, f, path, Index.open(path)


# ---- the deny list ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_deny_list_removes_items_from_every_answer_and_survives_reopening(tmp_path, backend):
    index, f, path, opened = written(tmp_path, backend)
    Q = random_histories(5, 10, index.n_items, 4)
    first = index.search(Q, 3)[1][:, 0]
    denied = np.unique(first)
    summary = set_denied(path, f.item_ids[denied])
    assert summary["denied_items"] == len(denied)
    reopened = Index.open(path)
    assert reopened.info()["denied_items"] == len(denied)
    assert reopened.info()["build_id"] == opened.info()["build_id"]  # the build's files are unchanged
    assert reopened.info()["generation"] != opened.info()["generation"]
    scores, ids = reopened.search(Q, 7, threads=1, exclude=[f.item_ids[0]])
    all_scores, ref = reference(f, Q, 7, blocked_matrix(10, index.n_items, [[0]] * 10, None, denied))
    assert_answers(scores, ids, ref, all_scores)
    assert Index.verify(path) == []
    set_denied(path, [])
    cleared = Index.open(path)
    assert cleared.info()["denied_items"] == 0
    assert np.array_equal(cleared.search(Q, 3)[1], index.search(Q, 3)[1])


def test_a_tampered_or_foreign_deny_list_is_refused(tmp_path):
    index, f, path, _ = written(tmp_path, "sparse")
    set_denied(path, f.item_ids[:3])
    deny_file = tmp_path / "a.idx" / "deny.arrow"
    raw = bytearray(deny_file.read_bytes())
    raw[-20] ^= 0xFF
    deny_file.write_bytes(bytes(raw))
    assert any("deny.arrow" in p for p in Index.verify(path))
    with pytest.raises(IndexFormatError, match="deny.arrow"):
        Index.open(path)
    # a deny list of another generation, with the manifest patched to match its size and checksum
    other = str(tmp_path / "b.idx")
    index.write(other)
    set_denied(other, f.item_ids[:3])
    import shutil

    shutil.copy(tmp_path / "b.idx" / "deny.arrow", deny_file)
    manifest = json.loads((tmp_path / "a.idx" / "manifest.json").read_text())
    from sparseidx.index.format import sha256_file

    manifest["files"]["deny.arrow"] = {"bytes": deny_file.stat().st_size, "sha256": sha256_file(str(deny_file))}
    (tmp_path / "a.idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="another"):
        Index.open(path)


def test_deny_refuses_unknown_ids_unless_skipped(tmp_path):
    _, f, path, _ = written(tmp_path, "sparse")
    with pytest.raises(UnknownItemError, match="unknown item id.*--skip-unknown"):
        set_denied(path, [f.item_ids[0], 99999])
    assert Index.open(path).info()["denied_items"] == 0  # nothing written
    assert set_denied(path, [f.item_ids[0], 99999], skip_unknown=True)["denied_items"] == 1


# ---- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_options_object_mapping_and_keywords_are_the_same_query(backend):
    index, _ = build(backend)
    Q = random_histories(2, 6, index.n_items, 4)
    knobs = {"prune": 0.01, "candidates": 30} if backend == "sparse" else {"threads": 1}
    a = index.search(Q, 10, index.Options(**knobs))
    b = index.search(Q, 10, knobs)
    c = index.search(Q, 10, **knobs)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[1], c[1])


@pytest.mark.parametrize("backend,options,message", [
    ("sparse", {"nprobe": 4}, "--nprobe applies to FAISS indexes; this index is sparse"),
    ("faiss", {"prune": 0.1}, "--prune applies to sparse indexes; this index is FAISS"),
    ("sparse", {"bogus": 1}, "unknown search option.*bogus"),
    ("sparse", {"prune": "0.1"}, "prune must be a finite number"),
    ("sparse", {"prune": float("nan")}, "prune must be a finite number"),
    ("sparse", {"budget": 2.5}, "budget must be an integer"),
    ("sparse", {"threads": True}, "threads must be an integer"),
    ("sparse", {"exclude_history": 1}, "exclude_history must be true or false"),
    ("sparse", {"candidates": 3}, "candidates must be at least k"),
    ("faiss", {"ef_search": 8, "nprobe": 2}, "not both"),
    ("faiss", {"ef_search": 0}, "ef_search must be at least 1"),
])
def test_bad_options_are_refused_in_one_line(backend, options, message):
    index, _ = build(backend)
    with pytest.raises(DataError, match=message):
        index.search([[index.item_ids[0]]], 10, options)


def test_another_backends_options_object_is_refused():
    index, _ = build("sparse")
    with pytest.raises(DataError, match="FaissSearchOptions given to an index that takes SparseSearchOptions"):
        index.search([[index.item_ids[0]]], 5, FaissSearchOptions())
    assert SparseSearchOptions(prune=0.1).changed() == {"prune": 0.1}


# ---- building, writing, info -----------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_write_open_round_trip_answers_alike_and_info_describes_the_index(tmp_path, backend):
    index, _, _, again = written(tmp_path, backend)
    Q = random_histories(9, 5, index.n_items, 3)
    assert np.array_equal(again.search(Q, 8)[1], index.search(Q, 8)[1])
    info = again.info()
    assert info["backend"] == backend and info["n_items"] == 120 and info["n_dims"] == 24
    assert info["build_id"] == again.manifest["build_id"] and info["denied_items"] == 0
    assert set(info["options"]) == set(again.Options.names())


def test_index_build_owns_the_backend_choice():
    sparse = factors_for("sparse")
    dense = factors_for("faiss")
    assert Index.build(sparse).backend == "sparse"
    assert Index.build(dense).backend == "faiss"
    assert Index.build(dense, backend="faiss", faiss_index="HNSW32,Flat").spec == "HNSW32,Flat"
    with pytest.raises(DataError, match="dense embeddings: use the faiss backend"):
        Index.build(dense, backend="sparse")
    with pytest.raises(DataError, match="sparse embeddings: use the sparse backend"):
        Index.build(sparse, backend="faiss")
    with pytest.raises(DataError, match="unknown backend 'annoy'"):
        Index.build(sparse, backend="annoy")


# ---- command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = (rng.random((60, 30)) < 0.2).astype(np.float32)
    X[rng.integers(0, 60, 30), np.arange(30)] = 1.0
    write_lines(tmp / "train.txt", sp.csr_matrix(X))
    path = str(tmp / "book.idx")
    res = CliRunner().invoke(cli, ["build", str(tmp / "train.txt"), "--model", "chol", "--l2", "5", "--out", path])
    assert res.exit_code == 0, res.output
    return tmp, path


def _query(path, *args):
    res = CliRunner().invoke(cli, ["query", path, "--history", "0", "1", "-k", "5", "--json", *args])
    return res


def test_cli_query_filters_match_the_library(cli_index):
    tmp, path = cli_index
    index = Index.open(path)
    plain = [it["item_id"] for it in json.loads(_query(path).stdout)["items"]]
    (tmp / "ex.txt").write_text(f"{plain[0]}\n\n  {plain[2]}  \n")
    got = [it["item_id"] for it in json.loads(_query(path, "--exclude-items", str(tmp / "ex.txt")).stdout)["items"]]
    want = index.item_ids[index.search([[0, 1]], 5, exclude=[plain[0], plain[2]])[1][0]].tolist()
    assert got == want and plain[0] not in got and plain[2] not in got
    (tmp / "al.txt").write_text("5\n6\n7\n0\n")
    got = [it["item_id"] for it in json.loads(_query(path, "--allow-items", str(tmp / "al.txt")).stdout)["items"]]
    assert sorted(got) == [5, 6, 7]  # 0 is in the history


def test_cli_evaluate_with_filters_counts_filtered_test_items_as_misses(cli_index):
    tmp, path = cli_index
    write_lines(tmp / "test.txt", sp.csr_matrix(np.eye(60, 30, dtype=np.float32)))
    (tmp / "none.txt").write_text("\n".join(str(i) for i in range(30)) + "\n")
    res = CliRunner().invoke(cli, ["evaluate", path, "--train", str(tmp / "train.txt"), "--test",
                                   str(tmp / "test.txt"), "--json", "--exclude-items", str(tmp / "none.txt")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recall@20"] == 0.0


def test_cli_deny_sets_and_clears_the_list_and_refuses_bad_input(cli_index, tmp_path):
    tmp, path = cli_index
    plain = [it["item_id"] for it in json.loads(_query(path).stdout)["items"]]
    (tmp_path / "deny.txt").write_text(f"{plain[0]}\n")
    res = CliRunner().invoke(cli, ["deny", path, "--items", str(tmp_path / "deny.txt"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["denied_items"] == 1
    got = [it["item_id"] for it in json.loads(_query(path).stdout)["items"]]
    assert got == plain[1:] + got[4:] and plain[0] not in got
    (tmp_path / "bad.txt").write_text("nope\n")
    res = CliRunner().invoke(cli, ["deny", path, "--items", str(tmp_path / "bad.txt")])
    assert res.exit_code == 1 and "unknown item id(s) nope" in res.output and "Traceback" not in res.output
    (tmp_path / "latin.txt").write_bytes(b"\xff\xfe1\n")
    res = CliRunner().invoke(cli, ["deny", path, "--items", str(tmp_path / "latin.txt")])
    assert res.exit_code == 1 and "latin.txt:1: not valid UTF-8" in res.output
    res = CliRunner().invoke(cli, ["deny", path])
    assert res.exit_code == 2 and "--items FILE" in res.output
    res = CliRunner().invoke(cli, ["deny", path, "--clear"])
    assert res.exit_code == 0, res.output
    assert [it["item_id"] for it in json.loads(_query(path).stdout)["items"]] == plain


def test_cli_refuses_another_backends_knob_as_a_usage_error(cli_index):
    _, path = cli_index
    res = _query(path, "--ef-search", "16")
    assert res.exit_code == 2 and "--ef-search applies to FAISS indexes; this index is sparse" in res.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_by_user_vectors_equals_search_by_histories(backend):
    index, f = build(backend)
    Q = random_histories(4, 7, index.n_items, 5)
    U = sp.csr_matrix(Q, dtype=np.float32) @ f.encoder
    by_history = index.search(Q, 10, exclude_history=False, exclude=[f.item_ids[3]])
    by_vector = index.search_vectors(U if backend == "sparse" else U.toarray(), 10, exclude=[f.item_ids[3]])
    assert np.allclose(by_vector[0], by_history[0], atol=TOL, rtol=TOL)
    scores, ids = by_vector
    assert np.allclose(scores, f.dense_scores(Q)[np.arange(7)[:, None], ids], atol=TOL, rtol=TOL)
    assert not (ids == 3).any()
    with pytest.raises(DataError, match="user vectors have 3 dimensions but the index has 24"):
        index.search_vectors(np.ones((2, 3)), 5)
    with pytest.raises(DataError, match="NaN or infinite"):
        index.search_vectors(np.full((1, 24), np.nan), 5)
    zero = index.search_vectors_detailed(np.zeros((1, 24)), 3)
    assert zero.popular.all()


@pytest.mark.parametrize("prune", [None, 0.5])
def test_a_short_allow_list_is_scored_from_its_rows_and_a_long_one_through_the_lists_both_exactly(prune):
    """Under a short allow list the engine scores the allowed rows (no postings read), exact even when pruned."""
    index, f = build("sparse", n_items=300, n_dims=40, density=0.3)
    Q = random_histories(8, 6, 300, 5)
    for allow, scanned in ((list(range(0, 300, 97)), False), (list(range(300)), True)):
        res = index.search_detailed(Q, 5, prune=prune, threads=1, allow=list(f.item_ids[allow]))
        assert (res.postings > 0).all() == scanned and (res.postings == 0).all() != scanned
        if scanned and prune:
            continue  # pruned through the lists: approximate, checked by the property test above
        all_scores, ref = reference(f, Q, 5, blocked_matrix(6, 300, None, [allow] * 6))
        assert_answers(res.scores, res.ids, ref, all_scores)
