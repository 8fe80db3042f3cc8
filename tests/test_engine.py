"""The query engine against brute-force scipy scoring (property tests)."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import brute_force_topk, random_factors, random_histories
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseidx import Factors, Index
from sparseidx.errors import DataError, UnknownItemError
from sparseidx.index import kernels

TOL = 1e-4
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, Q):
    """Engine answers equal brute force up to float ties: same score sequence, true scores, no history."""
    assert scores.shape == ref_scores.shape
    assert np.array_equal(ids < 0, ref_ids < 0)
    valid = ids >= 0
    assert np.allclose(scores[valid], ref_scores[valid], atol=TOL, rtol=TOL)
    rows = np.nonzero(valid)[0]
    assert np.allclose(scores[valid], all_scores[rows, ids[valid]], atol=TOL, rtol=TOL)
    hist = Q.toarray() != 0
    assert not hist[rows, ids[valid]].any(), "a history item was returned"
    for r in range(len(ids)):
        got = ids[r][ids[r] >= 0]
        assert len(set(got)) == len(got)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_items=st.integers(1, 300), n_dims=st.integers(1, 80),
       density=st.floats(0.005, 0.5), k=st.integers(1, 40), zero_priors=st.booleans())
def test_exact_search_equals_brute_force(seed, n_items, n_dims, density, k, zero_priors):
    f = random_factors(seed, n_items, n_dims, density, zero_priors)
    Q = random_histories(seed, 7, n_items, min(5, n_items))
    index = Index.build(f)
    scores, ids = index.search(Q, k, threads=1)
    all_scores = f.dense_scores(Q)
    ref_scores, ref_ids = brute_force_topk(all_scores, Q, k)
    assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, Q)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_dims=st.integers(2, 60), m=st.integers(1, 30),
       mass=st.floats(0.05, 1.0), budget=st.integers(1, 400))
def test_pruned_search_equals_brute_force_on_the_pruned_query(seed, n_dims, m, mass, budget):
    n_items = 150
    f = random_factors(seed, n_items, n_dims, 0.15)
    Q = random_histories(seed, 5, n_items, 6)
    index = Index.build(f)
    U = (Q @ f.encoder).toarray()
    V = f.embeddings.toarray()
    for option, value in (("query_dims", m), ("query_mass", mass), ("budget", budget)):
        pruned = np.zeros_like(U)
        for q in range(len(U)):
            pruned[q] = reference_pruned_query(U[q], V, option, value)
        scores, ids = index.search(Q, 10, threads=1, **{option: value})
        if option == "budget":
            all_scores = budget_scores(U, V, budget) * f.priors[None, :]
        else:
            all_scores = (pruned @ V.T) * f.priors[None, :]
        ref_scores, ref_ids = brute_force_topk(all_scores, Q, 10)
        assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, Q)
    # both knobs: the budget is spent on the query_dims strongest dimensions only
    kept = np.array([reference_pruned_query(U[q], V, "query_dims", m) for q in range(len(U))])
    scores, ids = index.search(Q, 10, threads=1, query_dims=m, budget=budget)
    all_scores = budget_scores(kept, V, budget) * f.priors[None, :]
    ref_scores, ref_ids = brute_force_topk(all_scores, Q, 10)
    assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, Q)


def reference_pruned_query(u, V, option, value):
    touched = np.flatnonzero(u)
    order = touched[np.argsort(-np.abs(u[touched]), kind="stable")]
    if option == "query_dims":
        keep = order[:value]
    elif option == "query_mass":
        cum = np.cumsum(np.abs(u[order]))
        n = np.searchsorted(cum, value * cum[-1] * (1 - 1e-7)) + 1 if len(order) else 0
        keep = order[: min(n, len(order))] if value < 1 else order
    else:
        keep = order
    out = np.zeros_like(u)
    out[keep] = u[keep]
    return out


def budget_scores(U, V, budget):
    """Scores when dims are scanned by |u_d| * max|V_d| and each list in |v| order until the budget."""
    out = np.zeros((len(U), V.shape[0]))
    max_abs = np.abs(V).max(axis=0)
    for q, u in enumerate(U):
        touched = np.flatnonzero(u)
        by_mag = touched[np.argsort(-np.abs(u[touched]), kind="stable")]
        order = by_mag[np.argsort(-(np.abs(u[by_mag]) * max_abs[by_mag]).astype(np.float32), kind="stable")]
        left = budget
        for d in order:
            if left <= 0:
                break
            items = np.flatnonzero(V[:, d])
            items = items[np.lexsort((items, -np.abs(V[items, d])))][:left]
            out[q, items] += u[d] * V[items, d]
            left -= len(items)
    return out


def test_k_larger_than_candidates_pads_with_minus_one():
    f = random_factors(1, 12, 5, 0.3)
    Q = random_histories(1, 3, 12, 4)
    scores, ids = Index.build(f).search(Q, 20, threads=1)
    n_hist = np.diff(Q.indptr)
    for r in range(3):
        assert (ids[r] >= 0).sum() == 12 - n_hist[r]
        assert np.all(np.isneginf(scores[r][ids[r] < 0]))


def test_history_never_returned_even_with_top_scores():
    # item 0 has the largest score for everyone, but it is in the history
    E = sp.csr_matrix(np.eye(3, dtype=np.float32))
    V = sp.csr_matrix(np.array([[9.0, 9, 9], [-1, -1, -1], [-2, -2, -2]], dtype=np.float32))
    f = Factors(E, V, np.ones(3), np.arange(3))
    scores, ids = Index.build(f).search([[0]], 3)
    assert ids.tolist() == [[1, 2, -1]]
    assert scores[0, :2].tolist() == [-1.0, -2.0]


def test_zero_score_items_rank_above_negative_ones():
    E = sp.csr_matrix(np.eye(4, dtype=np.float32))
    V = sp.csr_matrix(np.array([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    f = Factors(E, V, np.ones(4), np.arange(4))
    scores, ids = Index.build(f).search([[0]], 3)
    assert ids.tolist() == [[2, 3, 1]]  # untouched items (score 0) beat the negative one


# non-negative float32 keys: frequent ties (and neighbours one ulp apart), or anything from 0 to the largest float32
KEYS = st.sampled_from([0.0, 0.5, 1.0, 1.0000001, 2.0, 3.5]) | st.floats(0, float(np.finfo(np.float32).max), width=32)


@SETTINGS
@given(pairs=st.lists(st.tuples(KEYS, st.integers(0, 5)), min_size=1, max_size=300), target=st.integers(1, 400))
def test_top_by_weight_takes_the_best_keys_until_their_weights_reach_the_target(pairs, target):
    keys = np.array([k for k, _ in pairs], dtype=np.float32)
    weights = np.array([w for _, w in pairs], dtype=np.int64)
    n = len(keys)
    out = np.full(n, -1, dtype=np.int64)
    got = kernels._top_by_weight(keys, weights, n, target, out)
    order = np.argsort(-keys, kind="stable")  # larger first, ties: lower position first
    reached = np.flatnonzero(np.cumsum(weights[order]) >= target)
    if len(reached) == 0:  # the weights fall short: every position
        assert got == n and sorted(out.tolist()) == list(range(n))
        return
    expected = order[: reached[0] + 1]
    assert got == len(expected)
    assert sorted(out[:got].tolist()) == sorted(expected.tolist())
    assert out[got - 1] == expected[-1]  # the lowest ranked comes last: a budget cuts its list


def test_every_item_and_dimension_touched_stays_in_bounds():
    # the branch-free appends write one slot past the last touched dimension and item
    n_items, n_dims = 64, 64
    rng = np.random.default_rng(5)
    dense = sp.csr_matrix(rng.normal(size=(n_items, n_dims)))
    f = Factors(encoder=dense, embeddings=dense, priors=np.ones(n_items), item_ids=np.arange(n_items))
    index = Index.build(f)
    Q = sp.csr_matrix(np.ones((3, n_items), dtype=np.float32))
    Q[1, :5] = 0
    Q.eliminate_zeros()
    all_scores = f.dense_scores(Q)
    for options in ({}, {"prune": 1e-9, "candidates": n_items}):
        scores, ids = index.search(Q, 10, threads=1, exclude_history=False, **options)
        ref_scores, ref_ids = brute_force_topk(all_scores, sp.csr_matrix(Q.shape), 10)
        assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, sp.csr_matrix(Q.shape))


@pytest.mark.parametrize("options", [{}, {"prune": 0.01}, {"budget": 50}, {"query_dims": 5}])
def test_threads_give_identical_results(options):
    f = random_factors(3, 400, 50, 0.05)
    Q = random_histories(3, 200, 400, 8)
    index = Index.build(f)
    one = index.search_detailed(Q, 15, threads=1, **options)
    two = index.search_detailed(Q, 15, threads=2, **options)
    assert np.array_equal(one.ids, two.ids) and np.array_equal(one.scores, two.scores)
    assert np.array_equal(one.postings, two.postings) and np.array_equal(one.entries, two.entries)


def test_recall_is_non_decreasing_in_query_dims_and_budget():
    f = random_factors(8, 300, 80, 0.1)
    Q = random_histories(8, 60, 300, 6)
    index = Index.build(f)
    _, exact = index.search(Q, 10, threads=1)

    def recall(**options):
        _, ids = index.search(Q, 10, threads=1, **options)
        return np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, exact)])

    by_dims = [recall(query_dims=m) for m in (1, 2, 4, 8, 16, 32, 80)]
    by_budget = [recall(budget=b) for b in (5, 20, 50, 100, 200, 400, 10_000)]
    assert by_dims == sorted(by_dims) and by_dims[-1] == 1.0 and by_dims[0] < 1.0
    assert by_budget == sorted(by_budget) and by_budget[-1] == 1.0 and by_budget[0] < 1.0


def test_statistics_count_postings_and_coverage():
    f = random_factors(4, 100, 20, 0.1)
    Q = random_histories(4, 6, 100, 3)
    res = Index.build(f).search_detailed(Q, 5, threads=1)
    U = (Q @ f.encoder).toarray()
    lengths = np.diff(f.embeddings.tocsc().indptr)
    assert res.postings.tolist() == [int(lengths[u != 0].sum()) for u in U]
    all_scores = f.dense_scores(Q)
    all_scores[Q.toarray() != 0] = 0.0
    assert res.nonzero.tolist() == list((np.abs(all_scores) > 0).sum(axis=1))
    # entries read: encoder rows of the history plus the postings scanned
    assert res.entries.tolist() == [int(np.diff(f.encoder.indptr)[Q[q].indices].sum()) + res.postings[q]
                                    for q in range(Q.shape[0])]
    rescored = Index.build(f).search_detailed(Q, 5, threads=1, prune=0.0, candidates=7)
    V_rows = np.diff(f.embeddings.indptr)
    for q in range(Q.shape[0]):
        # the candidates are rescored from the forward rows of V: all 7 here (no history item is a candidate)
        assert rescored.entries[q] > res.entries[q] and rescored.entries[q] - res.entries[q] <= 7 * V_rows.max()


def test_empty_history_returns_popular_items_flagged():
    f = random_factors(5, 30, 10, 0.2)
    index = Index.build(f)
    res = index.search_detailed([[], [10, 20]], 4)
    assert res.popular.tolist() == [True, False]
    want = np.lexsort((np.arange(30), -f.popularity))[:4]
    assert res.ids[0].tolist() == want.tolist()
    # an empty history reads nothing, also where rescoring would read candidate rows
    for options in ({}, {"prune": 0.1}, {"prune": 0.1, "candidates": 10}):
        for threads in (1, 2):
            res = index.search_detailed([[], [10, 20]], 4, threads=threads, **options)
            assert res.ids[0].tolist() == want.tolist()
            assert [res.postings[0], res.nonzero[0], res.entries[0]] == [0, 0, 0]
            assert res.entries[1] > 0
    no_pop = Index.build(random_factors(5, 30, 10, 0.2, popularity=False))
    with pytest.raises(DataError, match="no popularity counts"):
        no_pop.search([[]], 4)


def test_external_ids_unknown_items():
    index = Index.build(random_factors(6, 20, 8, 0.3))
    with pytest.raises(UnknownItemError, match=r"unknown item id\(s\) 15 \(query 2\)"):
        index.search([[10], [15, 20]], 3)
    skipped = index.search([[10], [15, 20]], 3, skip_unknown=True)
    assert np.array_equal(skipped[1][1], index.search([[10], [20]], 3)[1][1])


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 0}, "k must be a positive integer"),
    ({"query_dims": 0}, "query_dims must be at least 1"),
    ({"query_mass": 1.5}, "query_mass must be in"),
    ({"budget": 0}, "budget must be at least 1"),
    ({"threads": 0}, "threads must be at least 1"),
    ({"ef_search": 16}, "appl(y|ies) to FAISS indexes"),
])
def test_invalid_search_options(kwargs, message):
    index = Index.build(random_factors(7, 20, 8, 0.3))
    kwargs = {"k": 5, **kwargs}
    with pytest.raises(DataError, match=message):
        index.search([[10]], **kwargs)


def test_histories_matrix_shape_is_checked():
    index = Index.build(random_factors(8, 20, 8, 0.3))
    with pytest.raises(DataError, match="histories have 5 item columns but the index has 20 items"):
        index.search(sp.csr_matrix((2, 5)), 3)


def pruned_scores(U, V, prune):
    """Scores from postings with |u_d v| >= prune * max_d |u_d| max|V_d| only (the engine's approximation)."""
    contrib = U[:, :, None] * V.T[None, :, :]  # queries x dims x items
    top = (np.abs(U) * np.abs(V).max(axis=0)[None, :]).max(axis=1)
    keep = np.abs(contrib) >= (prune * top)[:, None, None]
    return np.where(keep, contrib, 0.0).sum(axis=1)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_items=st.integers(1, 120), n_dims=st.integers(1, 40),
       prune=st.floats(0.0, 0.9), k=st.integers(1, 15))
def test_rescoring_every_item_is_exact_whatever_the_pruning(seed, n_items, n_dims, prune, k):
    f = random_factors(seed, n_items, n_dims, 0.2)
    Q = random_histories(seed, 6, n_items, min(4, n_items))
    index = Index.build(f)
    scores, ids = index.search(Q, k, threads=1, prune=prune, candidates=max(k, n_items))
    all_scores = f.dense_scores(Q)
    ref_scores, ref_ids = brute_force_topk(all_scores, Q, k)
    assert_same_answers(scores, ids, ref_scores, ref_ids, all_scores, Q)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_dims=st.integers(2, 40), prune=st.floats(0.0, 0.5), k=st.integers(1, 10))
def test_rescored_candidates_are_the_best_approximate_items_with_exact_scores(seed, n_dims, prune, k):
    n_items = 100
    f = random_factors(seed, n_items, n_dims, 0.2)
    Q = random_histories(seed, 5, n_items, 5)
    index = Index.build(f)
    U, V = (Q @ f.encoder).toarray(), f.embeddings.toarray()
    approx = pruned_scores(U, V, prune) * f.priors[None, :]
    exact = f.dense_scores(Q)
    C = 2 * k
    scores, ids = index.search(Q, k, threads=1, prune=prune, candidates=C)
    for q in range(len(U)):
        # reference: top-C by approximate score, then top-k of those by exact score
        _, cand = brute_force_topk(approx[q: q + 1], Q[q], C)
        cand = cand[0][cand[0] >= 0]
        masked = np.full((1, n_items), np.nan)
        masked[0, cand] = exact[q, cand]
        ref_scores, ref_ids = brute_force_topk(np.nan_to_num(masked, nan=-np.inf), Q[q], k)
        valid = ids[q] >= 0
        assert np.allclose(scores[q][valid], exact[q, ids[q][valid]], atol=TOL, rtol=TOL)
        assert np.allclose(np.sort(scores[q][valid]), np.sort(ref_scores[0][ref_ids[0] >= 0][: valid.sum()]),
                           atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("prune", [0.0, 0.05, 0.3])
def test_pruned_queries_touching_few_or_many_items_agree_with_the_reference(prune):
    # the engine lists the items a pruned query touches until n_items / 4 of them, then marks blocks
    n_items, n_dims, k, C = 300, 50, 5, 12
    f = random_factors(21, n_items, n_dims, 0.08)
    Q = random_histories(21, 40, n_items, 12)
    U, V = (Q @ f.encoder).toarray(), f.embeddings.toarray()
    contrib = U[:, :, None] * V.T[None, :, :]
    top = (np.abs(U) * np.abs(V).max(axis=0)[None, :]).max(axis=1)
    touched = (np.abs(contrib) >= (prune * top)[:, None, None]).any(axis=1) & (contrib != 0).any(axis=1)
    counts = touched.sum(axis=1)
    assert (counts < n_items // 4).any() and (counts > n_items // 4).any(), counts
    approx = pruned_scores(U, V, prune) * f.priors[None, :]
    exact = f.dense_scores(Q)
    res = Index.build(f).search_detailed(Q, k, threads=1, prune=prune, candidates=C)
    history = Q.toarray() != 0
    assert np.array_equal(res.nonzero, ((approx != 0) & ~history).sum(axis=1))
    for q in range(len(U)):
        _, cand = brute_force_topk(approx[q: q + 1], Q[q], C)
        masked = np.full((1, n_items), -np.inf)
        masked[0, cand[0]] = exact[q, cand[0]]
        ref_scores, ref_ids = brute_force_topk(masked, Q[q], k)
        assert np.array_equal(res.ids[q], ref_ids[0])
        assert np.allclose(res.scores[q], ref_scores[0], atol=TOL, rtol=TOL)


def test_recall_is_non_decreasing_in_candidates_and_exact_at_zero_prune():
    f = random_factors(3, 400, 60, 0.1)
    Q = random_histories(3, 40, 400, 8)
    index = Index.build(f)
    _, exact = index.search(Q, 10, threads=1)
    recalls = []
    for C in (10, 20, 40, 80, 400):
        _, ids = index.search(Q, 10, threads=1, prune=0.05, candidates=C)
        recalls.append(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, exact)]))
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    _, ids = index.search(Q, 10, threads=1, prune=0.0, candidates=10)
    assert np.array_equal(ids, exact)


@pytest.mark.parametrize("options, message", [
    ({"prune": 1.0}, "prune must be in"), ({"prune": -0.1}, "prune must be in"),
    ({"prune": 0.01, "candidates": 5}, "candidates must be at least k"),
])
def test_bad_pruning_options_are_refused(options, message):
    index = Index.build(random_factors(1, 30, 10, 0.3))
    with pytest.raises(DataError, match=message):
        index.search([[0]], 10, **options)


def integer_factors(seed, n_items, n_dims, density):
    """Weights in {-2, -1, 1, 2}: partial sums often cancel to exactly 0."""
    rng = np.random.default_rng(seed)

    def draw(n):
        return rng.choice([-2.0, -1.0, 1.0, 2.0], size=n)

    E = sp.random(n_items, n_dims, density=density, random_state=rng, format="csr", data_rvs=draw)
    V = sp.random(n_items, n_dims, density=density, random_state=rng, format="csr", data_rvs=draw)
    return Factors(encoder=E, embeddings=V, priors=np.ones(n_items), item_ids=np.arange(n_items))


@SETTINGS
@given(seed=st.integers(0, 10_000), n_items=st.integers(2, 80), n_dims=st.integers(2, 30),
       density=st.floats(0.05, 0.6), k=st.integers(1, 10), candidates=st.integers(0, 30))
def test_pruned_path_with_exact_cancellations_equals_brute_force(seed, n_items, n_dims, density, k, candidates):
    # the pruned path lists an item when its score is found at 0: a sum back at exactly 0 lists it again,
    # and it must still be answered once, with its full score
    f = integer_factors(seed, n_items, n_dims, density)
    Q = random_histories(seed, 6, n_items, min(4, n_items))
    options = {"prune": 1e-9, "candidates": max(k, candidates) if candidates else None}
    res = Index.build(f).search_detailed(Q, k, threads=1, **options)
    all_scores = f.dense_scores(Q)
    ref_scores, ref_ids = brute_force_topk(all_scores, Q, k)
    assert_same_answers(res.scores, res.ids, ref_scores, ref_ids, all_scores, Q)
    masked = np.where(Q.toarray() != 0, 0.0, all_scores)
    assert res.nonzero.tolist() == list((masked != 0).sum(axis=1))


def test_an_item_whose_score_returns_to_zero_is_answered_once():
    # item 0 gets +1 (d0), -1 (d1), then +0.5 (d2): listed at the first and the third posting; 40 items
    # keep the query on the listing path (it marks blocks once it has touched n_items / 4)
    n_items = 40
    V = np.zeros((n_items, 3))
    V[:3] = [[1.0, -1.0, 0.5], [0.0, 0.0, 0.2], [0.1, 0.0, 0.0]]
    E = np.zeros((n_items, 3))
    E[2] = 1.0
    f = Factors(encoder=sp.csr_matrix(E), embeddings=sp.csr_matrix(V), priors=np.ones(n_items),
                item_ids=np.arange(n_items) + 10)
    index = Index.build(f)
    for candidates in (None, 3):
        res = index.search_detailed([[12]], 3, prune=1e-9, candidates=candidates, threads=1)
        assert res.ids[0].tolist() == [0, 1, 3]  # then the untouched zeros, lowest index first
        assert np.allclose(res.scores[0], [0.5, 0.2, 0.0])
        assert res.nonzero[0] == 2 and res.postings[0] == 5


def test_histories_of_external_ids_count_each_item_once_in_any_order():
    f = random_factors(9, 50, 12, 0.3)
    index = Index.build(f)
    a = index.search_detailed([[30, 10, 30, 20]], 5)
    b = index.search_detailed([[10, 20, 30]], 5)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.scores, b.scores)
    rows = index.query_rows([[30, 10, 30], [], ["20"]])
    assert rows.indptr.tolist() == [0, 2, 2, 3] and rows.indices.tolist() == [1, 3, 2]
    assert rows.empty().tolist() == [False, True, False]
