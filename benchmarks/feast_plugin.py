"""Issue 29 figures: top-k latency through Feast's sparseidx online store against the engine called directly.

A sample of an index's items (``--items``, drawn with a fixed seed) is exported as a plugin
repository, applied and materialized with Feast's own CLI commands (timed), then each of
``--queries`` train histories (restricted to the sample) is answered one query at a time by:
the engine (``Index.search`` on a history, ``search_vectors`` on u = xE), the plugin's store
method (the engine plus parsing and the SQLite read of the requested feature), and
``FeatureStore.retrieve_online_documents_v2`` (the full Feast path) with a history, a sparse
u (JSON) or a dense u. Feast's own SQLite vector search is attempted and, where it cannot
run, the reason is recorded. Runs in the Feast venv (sparseidx installed there):

    .venv-feast/bin/python benchmarks/feast_plugin.py INDEX --train examples/amazon-book/train.txt \\
        --out reports/feast-plugin
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time

import numpy as np

import report  # benchmarks/, this script's directory

K = 20


def sample_factors(index, n_items: int, seed: int):
    """The index's factors restricted to ``n_items`` items drawn at random (all items for 0)."""
    from sparseidx import Factors

    f = index.to_factors()
    if 0 < n_items < index.n_items:
        keep = np.sort(np.random.default_rng(seed).choice(index.n_items, n_items, replace=False))
        f = Factors(encoder=f.encoder[keep], embeddings=f.embeddings[keep], priors=f.priors[keep],
                    item_ids=f.item_ids[keep], model=f.model, popularity=None)
    return f


def histories(train: str, item_ids: np.ndarray, n: int) -> list[list[int]]:
    """The first ``n`` train histories with at least one sampled item, restricted to the sample."""
    known = set(item_ids.tolist())
    found = []
    with open(train) as fh:
        for line in fh:
            items = [int(t) for t in line.split()[1:] if int(t) in known]
            if items:
                found.append(items)
                if len(found) == n:
                    break
    return found


def timed(fn, queries) -> tuple[dict, list]:
    """Per-query latency (us: p50, p95, mean) of ``fn(q)`` over the queries, one call at a time, and the answers."""
    for q in queries[:5]:  # warm up (compiled kernels, caches, registry)
        fn(q)
    times, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        answers.append(fn(q))
        times.append(time.perf_counter() - t0)
    us = np.array(times) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p95_us": float(np.percentile(us, 95)),
            "mean_us": float(us.mean())}, answers


def sqlite_vector_search() -> str:
    """Why Feast's own SQLite vector search does not run here (empty when it could)."""
    reasons = []
    if sys.version_info[:2] != (3, 10):
        reasons.append(f"Feast's SqliteOnlineStore loads sqlite-vec only on Python 3.10 "
                       f"(feast/infra/online_stores/sqlite.py, _get_conn); this is Python {platform.python_version()}")
    if not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
        reasons.append("this interpreter's sqlite3 module was built without extension loading, "
                       "so sqlite-vec cannot be loaded at all")
    return "; ".join(reasons)


def write_report(out: str, figures: dict) -> None:
    """results.json and a README.md table in ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(figures, fh, indent=1)
    lines = [f"# Top-{figures['k']} through Feast's sparseidx online store",
             "",
             (f"{figures['items']:,} items (of {figures['index_items']:,}) x {figures['dims']:,} dims "
              f"from `{figures['index']}`, "
              f"{figures['queries']} train histories one query at a time, options {figures['options']}, "
              f"Feast {figures['feast']}, Python {figures['python']}, {figures['date']}. "
              f"`feast apply` {figures['apply_s']} s, `feast materialize-incremental` (SQLite write + index build) "
              f"{figures['materialize_s']} s."),
             "",
             *report.table(["path", "p50 us", "p95 us", "mean us", "same top-k as the engine"],
                           [[r["path"], f"{r['p50_us']:,.0f}", f"{r['p95_us']:,.0f}", f"{r['mean_us']:,.0f}", r["same"]]
                            for r in figures["paths"]])]
    lines += ["", f"Feast's own SQLite vector search: {figures['feast_sqlite_vector_search']}", ""]
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index")
    ap.add_argument("--train", required=True)
    ap.add_argument("--out", default="reports/feast-plugin")
    ap.add_argument("--work", default="/tmp/feastplug/bench")
    ap.add_argument("--items", type=int, default=5000, help="items sampled from the index (0: all)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--prune", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out, train, work = (os.path.abspath(p) for p in (args.out, args.train, args.work))

    from feast import FeatureStore
    from feast import __version__ as feast_version
    from feast.cli.cli import cli

    from sparseidx.index import Index
    from sparseidx.integrations.feast_repo import write_plugin_repository

    os.makedirs(work, exist_ok=True)
    source = Index.open(args.index)
    factors = sample_factors(source, args.items, args.seed)
    sample = os.path.join(work, "sample.idx")
    Index.build(factors).write(sample, overwrite=True)
    repo = os.path.join(work, "repo")
    write_plugin_repository(Index.open(sample), repo, overwrite=True)
    yaml_path = os.path.join(repo, "feature_store.yaml")
    with open(yaml_path) as fh:
        yaml = fh.read().replace("  index_path: data/sparseidx\n",
                                 f"  index_path: data/sparseidx\n  search_options: {{prune: {args.prune}}}\n")
    with open(yaml_path, "w") as fh:
        fh.write(yaml)
    os.chdir(repo)  # Feast's CLI works on the current directory (and the SQL registry path is relative)
    steps = {}
    for name, cmd in (("apply", ["apply"]), ("materialize", ["materialize-incremental", "2100-01-01T00:00:00"])):
        t0 = time.perf_counter()
        cli.main(cmd, standalone_mode=False)
        steps[f"{name}_s"] = round(time.perf_counter() - t0, 2)

    store = FeatureStore(".")
    index = Index.open(os.path.join("data", "sparseidx", "item_embeddings.idx"))
    opts = index.Options.parse({"prune": args.prune})
    H = histories(train, factors.item_ids, args.queries)
    U = (index.histories_matrix(H) @ index.to_factors().encoder).tocsr()
    U.sort_indices()
    table = store.get_feature_view("item_embeddings")
    plugin = store._get_provider().online_store  # the SparseIdxOnlineStore instance Feast loaded

    def ids_of(scores_ids):
        ids = scores_ids[1][0]
        return index.item_ids[ids[ids >= 0]].tolist()

    def feast(**query):
        return store.retrieve_online_documents_v2(features=["item_embeddings:prior"], top_k=K,
                                                  **query).to_dict()["item_id"]

    def plugin_history(u):
        rows = plugin.retrieve_online_documents_v2(store.config, table, ["prior"], None, K,
                                                   query_string=json.dumps({"history": H[u]}))
        return [key.entity_values[0].int64_val for _, key, _ in rows]

    def sparse_json(u):
        return json.dumps({"indices": U[u].indices.tolist(), "values": U[u].data.tolist()})

    # (name, function, reference): history paths answer like search(history), vector paths like search_vectors(u)
    paths = [("engine: Index.search(history)", lambda u: ids_of(index.search([H[u]], K, opts)), "history"),
             ("engine: Index.search_vectors(u)", lambda u: ids_of(index.search_vectors(U[u], K, opts)), "vector"),
             ("plugin store method (history)", plugin_history, "history"),
             ("Feast retrieve_online_documents_v2 (history)",
              lambda u: feast(query_string=json.dumps({"history": H[u]})), "history"),
             ("Feast retrieve_online_documents_v2 (sparse u)", lambda u: feast(query_string=sparse_json(u)), "vector"),
             ("Feast retrieve_online_documents_v2 (dense u)", lambda u: feast(query=U[u].toarray()[0].tolist()),
              "vector")]
    users = list(range(len(H)))
    references, results = {}, []
    for name, fn, kind in paths:
        stats, answers = timed(fn, users)
        reference = references.setdefault(kind, answers)
        same = sum(a == b for a, b in zip(answers, reference))
        results.append({"path": name, **{k: round(v) for k, v in stats.items()}, "same": f"{same}/{len(users)}"})
        print(f"{name}: p50 {stats['p50_us']:,.0f} us, p95 {stats['p95_us']:,.0f} us, same {same}", file=sys.stderr)
    write_report(out, {"index": args.index, "index_items": source.n_items, "items": index.n_items,
                       "dims": index.n_dims, "queries": len(H), "k": K,
                       "options": {"prune": args.prune}, "feast": feast_version, "python": platform.python_version(),
                       "date": time.strftime("%Y-%m-%d %H:%M"), **steps, "paths": results,
                       "feast_sqlite_vector_search": sqlite_vector_search() or "could run here; not measured"})


if __name__ == "__main__":
    main()
