"""Ranking metrics and the evaluation of an index on a train/test split or on held-out users.

Recall@k = hits / |test| (BARS, the default) or hits / min(k, |test|) (``recall="liang"``,
Liang et al. 2018, the definition of the Cholesky, ELSA and SANSA papers' tables);
Precision@k = hits / k; NDCG@k with the ideal DCG over min(|test|, k) positions; MAP@k =
sum over hit ranks r of Precision@r divided by min(|test|, k); coverage = fraction of the
user's non-history items with a non-zero score. Averages are over users with at least one
test item. See docs/evaluation.md.
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.sparse as sp

from .data import Interactions, load_interactions, lookup_ids
from .errors import DataError
from .progress import counter, log

DEFAULT_BATCH = 4096
RECALL_DEFINITIONS = ("bars", "liang")


def ranking_metrics(ids: np.ndarray, test: sp.csr_matrix, ks=(20,), test_sizes: np.ndarray | None = None,
                    recall: str = "bars") -> dict[str, np.ndarray]:
    """Per-user metrics of rankings ``ids`` (users x K, -1 for padding) against test rows.

    ``test`` has one row per ranked user (columns in the ids' item space);
    ``test_sizes`` overrides |test| per user (e.g. counting test items the
    index cannot rank). ``recall``: "bars" divides hits by |test|, "liang" by
    min(k, |test|). Returns arrays keyed ``recall@k``, ``ndcg@k``, ...
    """
    if recall not in RECALL_DEFINITIONS:
        raise DataError(f"recall definition {recall!r} is unknown; use one of {', '.join(RECALL_DEFINITIONS)}")
    ids = np.asarray(ids)
    test = sp.csr_matrix(test)
    n, K = ids.shape
    sizes = np.diff(test.indptr) if test_sizes is None else np.asarray(test_sizes)
    n_items = test.shape[1]
    test_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(test.indptr)) * n_items + test.indices
    rec_keys = np.arange(n, dtype=np.int64)[:, None] * n_items + np.where(ids < 0, 0, ids)
    hit = np.isin(rec_keys, test_keys) & (ids >= 0)
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    out = {}
    for k in ks:
        if k > K:
            raise ValueError(f"metric cut-off {k} exceeds the ranking length {K}")
        h = hit[:, :k]
        hits = h.sum(axis=1)
        safe = np.maximum(sizes, 1)
        ideal_len = np.minimum(sizes, k)
        idcg = np.concatenate(([0.0], np.cumsum(discount[:k])))[ideal_len]
        dcg = (h * discount[:k]).sum(axis=1)
        prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        out[f"recall@{k}"] = hits / (safe if recall == "bars" else np.maximum(ideal_len, 1))
        out[f"precision@{k}"] = hits / k
        out[f"ndcg@{k}"] = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), 0.0)
        out[f"map@{k}"] = (prec_at_r * h).sum(axis=1) / np.maximum(ideal_len, 1)
    return out


def evaluate(index, train: Interactions | str | os.PathLike, test: Interactions | str | os.PathLike,
             ks=(20,), batch_size: int = DEFAULT_BATCH, options=None, *, exclude=None, allow=None,
             recall: str = "bars", **knobs) -> dict:
    """Rank all items for every test user (train items excluded) and average the metrics.

    ``train`` supplies each user's history, ``test`` the held-out items; both may be
    paths or Interactions. ``options``/``knobs`` (``query_dims``, ``threads``, ...)
    and the item filters ``exclude``/``allow`` (flat lists of item ids, for every
    user) are passed to ``index.search_detailed``; a held-out item a filter removes
    counts as a miss. ``recall``: "bars" or "liang" (see the module's docstring).
    """
    options = index.options(options, **knobs)
    start = time.perf_counter()
    train = train if isinstance(train, Interactions) else load_interactions(train, item_ids=index.item_ids,
                                                                             skip_unknown=True)
    if not isinstance(test, Interactions):
        test = load_interactions(test)
    if getattr(train, "dropped", 0):
        log.warning("Warning: %d train interactions name items the index does not have; ignored", train.dropped)
    train_X = onto_items(train, index.item_ids)
    col, known = lookup_ids(index.item_ids, test.item_ids)
    sizes_all = np.diff(test.X.indptr)
    T = test.X.tocoo()
    keep = known[T.col]
    test_X = sp.csr_matrix((T.data[keep], (T.row[keep], col[T.col[keep]])), shape=(test.n_users, index.n_items))
    users = np.flatnonzero(sizes_all > 0)
    rows, in_train = lookup_ids(train.user_ids, test.user_ids[users])
    histories = history_rows(train_X, rows, in_train)
    if not in_train.all():
        if index.popularity is None:
            raise DataError(f"{int((~in_train).sum())} test users have no train history, and this index has no "
                            "popularity counts to answer them (imported embeddings); give a train file that "
                            "covers every test user")
        log.warning("Warning: %d test users have no train history; they get the most popular items",
                    int((~in_train).sum()))
    result = _rank_and_score(index, histories, test_X[users], sizes_all[users], ks, batch_size, options,
                             exclude, allow, recall)
    result["unknown_test_interactions"] = int((~keep).sum())
    result["cold_users"] = int((~in_train).sum())
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def evaluate_heldout(index, heldout: Interactions | str | os.PathLike, fold_in: float = 0.8, seed: int = 0,
                     ks=(20,), batch_size: int = DEFAULT_BATCH, options=None, *, exclude=None, allow=None,
                     recall: str = "bars", **knobs) -> dict:
    """The held-out-user protocol: fold in a share of each user's history, evaluate on the rest.

    Each user of ``heldout`` (users the index was not trained on) keeps
    ``ceil(fold_in x n)`` of their n items, chosen at random (``seed``), as the query
    history; the other items are the test set (``split_fold_in``). Users left with no
    test item are not evaluated. The remaining arguments are ``evaluate``'s.
    """
    if not 0 < fold_in < 1:
        raise DataError(f"fold-in share {fold_in!r} is outside (0, 1); use e.g. 0.8 (80% folded in, 20% held out)")
    options = index.options(options, **knobs)
    start = time.perf_counter()
    if not isinstance(heldout, Interactions):
        heldout = load_interactions(heldout, item_ids=index.item_ids, skip_unknown=True)
    if getattr(heldout, "dropped", 0):
        log.warning("Warning: %d held-out interactions name items the index does not have; ignored",
                    heldout.dropped)
    histories, test_X = split_fold_in(onto_items(heldout, index.item_ids), fold_in, seed)
    users = np.flatnonzero(np.diff(test_X.indptr) > 0)
    result = _rank_and_score(index, histories[users], test_X[users], None, ks, batch_size, options,
                             exclude, allow, recall)
    result.update({"fold_in": float(fold_in), "seed": int(seed), "seconds": round(time.perf_counter() - start, 3)})
    return result


def split_fold_in(X: sp.csr_matrix, fold_in: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(fold-in, test): each row's items split at random, ceil(fold_in x n) of its n items folded in.

    Users are visited in row order with one ``numpy.random.default_rng(seed)``, so a
    (file, fold_in, seed) triple always gives the same split. With fold_in = 0.8 a
    user with fewer than 5 items keeps them all (no test item), as in Liang et al.
    """
    X = sp.csr_matrix(X)
    rng = np.random.default_rng(seed)
    held = np.zeros(X.nnz, dtype=bool)
    for u in range(X.shape[0]):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        n_test = (hi - lo) - int(np.ceil(round(fold_in * (hi - lo), 9)))  # round: 0.8 x 5 is 4, not 4.000...1
        if n_test > 0:
            held[lo + rng.choice(hi - lo, size=n_test, replace=False)] = True
    return _rows_where(X, ~held), _rows_where(X, held)


def _rows_where(X: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    """X with only the stored entries where ``mask`` is True."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[mask]
    return sp.csr_matrix((X.data[mask], (rows, X.indices[mask])), shape=X.shape)


def _rank_and_score(index, histories, test_X, sizes, ks, batch_size, options, exclude, allow, recall) -> dict:
    """Metrics averaged over the rows of ``histories`` / ``test_X`` (one per evaluated user)."""
    ks = sorted({int(k) for k in ks})
    per_user = {f"{m}@{k}": [] for k in ks for m in ("recall", "precision", "ndcg", "map")}
    coverage, postings = [], []
    K = max(ks)
    n_users = histories.shape[0]
    with counter(n_users, "evaluating users") as progress:
        for s in range(0, n_users, batch_size):
            sel = slice(s, s + batch_size)
            res = index.search_detailed(histories[sel], K, options, exclude=exclude, allow=allow)
            metrics = ranking_metrics(res.ids, test_X[sel], ks, None if sizes is None else sizes[sel], recall)
            for name, vals in metrics.items():
                per_user[name].append(vals)
            hist_len = np.diff(histories[sel].indptr)
            coverage.append(res.nonzero / np.maximum(index.n_items - hist_len, 1))
            postings.append(res.postings)
            progress.update(len(res.ids))
    result = {"users": int(n_users), "items": int(index.n_items), "recall_definition": recall}
    for name, parts in per_user.items():
        result[name] = float(np.concatenate(parts).mean()) if parts else 0.0
    result["coverage"] = float(np.concatenate(coverage).mean()) if coverage else 0.0
    result["postings_per_query"] = float(np.concatenate(postings).mean()) if postings else 0.0
    return result


def onto_items(inter: Interactions, item_ids: np.ndarray) -> sp.csr_matrix:
    """The interactions' matrix with columns in the order of ``item_ids`` (unknown columns dropped)."""
    if len(inter.item_ids) == len(item_ids) and np.array_equal(inter.item_ids, item_ids):
        return inter.X
    col, known = lookup_ids(item_ids, inter.item_ids)
    C = inter.X.tocoo()
    keep = known[C.col]
    return sp.csr_matrix((C.data[keep], (C.row[keep], col[C.col[keep]])), shape=(inter.n_users, len(item_ids)))


def history_rows(X: sp.csr_matrix, rows: np.ndarray, present: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` of X in order, as truly empty rows (no stored entries) where ``present`` is False."""
    lengths = np.zeros(len(rows), dtype=np.int64)
    lengths[present] = np.diff(X.indptr)[rows[present]]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    picked = X[rows[present]]
    return sp.csr_matrix((picked.data, picked.indices, indptr), shape=(len(rows), X.shape[1]))
