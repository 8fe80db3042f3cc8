"""What item filters cost: single-query latency and recall of filtered queries beside unfiltered ones.

For exact search and the pruned operating points, each filter (a per-query exclude list,
a shared allow list of 10% or 1% of the items, a per-query allow list, a deny-like block
of 10% of the items) is timed one query at a time on one thread, in the same run as the
unfiltered query; recall@k is measured against the exact answer under the same filter.

    python benchmarks/filters.py INDEX --histories examples/amazon-book/test.txt --out reports/filters
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import scipy.sparse as sp

import report  # benchmarks/, this script's directory

from sparseidx.data import load_interactions
from sparseidx.index import Index

SETTINGS = [{}, {"prune": 1e-3}, {"prune": 3e-3}]


def filters(n_items: int, item_ids: np.ndarray, n_queries: int, rng) -> dict:
    """Filter cases: name -> keyword arguments of ``search`` for a batch of ``n_queries``."""
    tenth = item_ids[rng.choice(n_items, n_items // 10, replace=False)]
    hundredth = item_ids[rng.choice(n_items, n_items // 100, replace=False)]
    return {
        "none": {},
        "exclude 100 per query": {"exclude": [item_ids[rng.choice(n_items, 100, replace=False)]
                                              for _ in range(n_queries)]},
        "allow 10% (shared)": {"allow": tenth},
        "allow 1% (shared)": {"allow": hundredth},
        "allow 500 per query": {"allow": [item_ids[rng.choice(n_items, 500, replace=False)]
                                          for _ in range(n_queries)]},
        "exclude 10% (shared)": {"exclude": tenth},
    }


def _one(kwargs: dict, q: int) -> dict:
    """The filter of query q alone (a per-query list becomes that query's list)."""
    return {name: ([lists[q]] if isinstance(lists, list) else lists) for name, lists in kwargs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--histories", required=True)
    ap.add_argument("--out", default="reports/filters")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    idx = Index.open(args.index)
    inter = load_interactions(args.histories, item_ids=idx.item_ids, skip_unknown=True)
    X = inter.X[np.diff(inter.X.indptr) > 0]
    rng = np.random.default_rng(args.seed)
    H = sp.csr_matrix(X[np.sort(rng.choice(X.shape[0], min(args.queries, X.shape[0]), replace=False))],
                      dtype=np.float32)
    n = H.shape[0]
    rows = [H[q] for q in range(n)]
    cases = filters(idx.n_items, idx.item_ids, n, rng)
    results = []
    for name, kwargs in cases.items():
        exact = idx.search(H, args.k, exclude_history=True, **kwargs)[1]
        per_query = [_one(kwargs, q) for q in range(n)]
        for setting in SETTINGS:
            opts = idx.Options.parse(setting, threads=1)
            idx.search(rows[0], args.k, opts, **per_query[0])
            times, found = [], []
            for q in range(n):
                t0 = time.perf_counter()
                ids = idx.search(rows[q], args.k, opts, **per_query[q])[1][0]
                times.append(time.perf_counter() - t0)
                want = exact[q][exact[q] >= 0]
                found.append(len(np.intersect1d(ids[ids >= 0], want)) / max(len(want), 1))
            results.append({"filter": name, "setting": json.dumps(setting),
                            "p50_us": float(np.percentile(times, 50) * 1e6),
                            "recall_vs_exact": float(np.mean(found)),
                            "answered_k": float(np.mean([(idx.search(rows[q], args.k, opts, **per_query[q])[1][0] >= 0
                                                          ).sum() == (exact[q] >= 0).sum() for q in range(0, n, 10)]))})
    base = {r["setting"]: r["p50_us"] for r in results if r["filter"] == "none"}
    for r in results:
        r["p50_ratio"] = r["p50_us"] / base[r["setting"]]
    meta = {"index": os.path.abspath(args.index), "queries": n, "k": args.k}
    lines = [f"# Filtered queries: {n} queries, k={args.k}, one thread, one query per call", "",
             *report.table(["filter", "setting", "p50 (us)", "vs unfiltered", "recall vs exact filtered",
                            "same count as exact"],
                           [[r["filter"], r["setting"], f"{r['p50_us']:.1f}", f"{r['p50_ratio']:.2f}",
                             f"{r['recall_vs_exact']:.4f}", f"{r['answered_k']:.2f}"] for r in results])]
    report.write(args.out, {**meta, "rows": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
