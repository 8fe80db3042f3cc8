"""Exports read back by the stores' own client libraries (where they install) or checked against their schema."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import random_interactions, write_lines
from helpers import random_factors, random_histories

from sparseidx import Factors, Index
from sparseidx.errors import DataError, OutputError
from sparseidx.export import export
from sparseidx.export.parquet import read_parquet_factors
from sparseidx_cli.main import cli


@pytest.fixture
def index(tmp_path):
    """A sparse index with E != V (so the encoder is exported too), written and reopened."""
    f = random_factors(21, 80, 30, 0.15)
    Index.build(f).write(tmp_path / "idx")
    return Index.open(tmp_path / "idx"), f


def rows_of(f: Factors):
    V = f.embeddings
    return [(V.indices[V.indptr[i]: V.indptr[i + 1]], V.data[V.indptr[i]: V.indptr[i + 1]]) for i in range(V.shape[0])]


def test_parquet_holds_sorted_unique_uint32_indices_float32_values_and_metadata(index, tmp_path):
    idx, f = index
    export(idx, "parquet", str(tmp_path / "items.parquet"))
    table = pq.read_table(tmp_path / "items.parquet")
    assert str(table.schema.field("indices").type) == "list<element: uint32>"
    assert str(table.schema.field("values").type) == "list<element: float>"
    meta = json.loads(table.schema.metadata[b"sparseidx"])
    assert meta["n_dims"] == 30 and meta["kind"] == "items" and meta["index_format_version"] == 1
    assert meta["encoder_equals_embeddings"] is False
    assert table["item_id"].to_pylist() == f.item_ids.tolist()
    for (dims, vals), ind, val in zip(rows_of(f), table["indices"].to_pylist(), table["values"].to_pylist()):
        assert ind == sorted(set(ind)) and ind == dims.tolist()
        assert np.array_equal(np.array(val, dtype=np.float32), vals)
    assert np.array_equal(table["prior"].to_numpy(), f.priors)


def test_parquet_round_trip_through_build_embeddings_gives_identical_answers(index, tmp_path):
    idx, f = index
    export(idx, "parquet", str(tmp_path / "items.parquet"))
    res = CliRunner().invoke(cli, ["build", "--embeddings", str(tmp_path / "items.parquet"),
                                   "--out", str(tmp_path / "back.idx")])
    assert res.exit_code == 0, res.output
    back = Index.open(tmp_path / "back.idx")
    Q = random_histories(21, 30, 80, 5)
    a, b = idx.search(Q, 10, threads=1), back.search(Q, 10, threads=1)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    g = read_parquet_factors(str(tmp_path / "items.parquet"))
    assert (g.encoder != f.encoder).nnz == 0 and (g.embeddings != f.embeddings).nnz == 0
    assert np.array_equal(g.popularity, f.popularity)


def test_user_embeddings_equal_x_times_e(index, tmp_path, monkeypatch):
    import sparseidx.export.rows as rows

    monkeypatch.setattr(rows, "USERS_PER_BATCH", 5)  # streamed in several batches
    idx, f = index
    X = random_histories(5, 12, 80, 6)
    write_lines(tmp_path / "users.txt", X, item_ids=f.item_ids)
    export(idx, "parquet", str(tmp_path / "items.parquet"), users=str(tmp_path / "users.txt"))
    table = pq.read_table(tmp_path / "items.users.parquet")
    assert table.num_rows == 12 and table["user_id"].to_pylist() == list(range(12))
    U = (X @ f.encoder).tocsr()
    U.sort_indices()
    for q, (ind, val) in enumerate(zip(table["indices"].to_pylist(), table["values"].to_pylist())):
        assert ind == U.indices[U.indptr[q]: U.indptr[q + 1]].tolist()
        assert np.allclose(val, U.data[U.indptr[q]: U.indptr[q + 1]], rtol=1e-6)


def folded_rows_of(f: Factors):
    """The rows the store targets write: prior_i * V_i."""
    return [(dims, vals * np.float32(p)) for (dims, vals), p in zip(rows_of(f), f.priors)]


def test_store_targets_fold_the_priors_and_say_so(index, tmp_path):
    idx, f = index
    assert len(set(f.priors.tolist())) > 1
    export(idx, "qdrant", str(tmp_path / "p.jsonl"))
    guide = json.loads((tmp_path / "p.qdrant.json").read_text())
    assert guide["sparseidx"]["priors"].startswith("folded: each stored vector is v_i = prior_i * V_i")
    export(idx, "qdrant", str(tmp_path / "raw.jsonl"), fold_priors=False)
    assert json.loads((tmp_path / "raw.qdrant.json").read_text())["sparseidx"]["priors"].startswith("not folded")
    folded = [json.loads(x)["vector"]["embedding"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    raw = [json.loads(x)["vector"]["embedding"] for x in (tmp_path / "raw.jsonl").read_text().splitlines()]
    for a, b, (dims, vals), p in zip(folded, raw, rows_of(f), f.priors):
        assert a["indices"] == b["indices"] == dims.tolist() + [30]  # and the presence dimension
        assert np.allclose(a["values"][:-1], vals * p, rtol=1e-6) and np.allclose(b["values"][:-1], vals)
    with pytest.raises(DataError, match="--no-fold-priors applies to the store targets"):
        export(idx, "parquet", str(tmp_path / "x.parquet"), fold_priors=False)


def test_pgvector_text_parses_to_the_embedding(index, tmp_path):
    pgvector = pytest.importorskip("pgvector")
    idx, f = index
    export(idx, "pgvector", str(tmp_path / "items.tsv"))
    lines = (tmp_path / "items.tsv").read_text().splitlines()
    assert len(lines) == 80
    for line, (dims, vals), item in zip(lines, folded_rows_of(f), f.item_ids):
        item_id, text = line.split("\t")
        vec = pgvector.SparseVector.from_text(text)
        assert int(item_id) == item and vec.dimensions() == 30
        assert vec.indices() == dims.tolist()  # the client turns 1-based text into 0-based indices
        assert np.allclose(vec.values(), vals, rtol=1e-7)


def test_pgvector_warns_above_the_hnsw_limit(tmp_path, caplog):
    f = Factors(encoder=np.ones((3, 1200)), embeddings=np.ones((3, 1200)), priors=np.ones(3), item_ids=[1, 2, 3])
    with caplog.at_level("WARNING"):
        summary = export(Index.build(f), "pgvector", str(tmp_path / "x.tsv"))
    assert summary["items_over_hnsw_limit"] == 3 and "at most 1000" in caplog.text


def test_milvus_writes_signed_embeddings_as_a_dense_vector(index, tmp_path):
    idx, f = index
    export(idx, "milvus", str(tmp_path / "milvus.parquet"))
    table = pq.read_table(tmp_path / "milvus.parquet")
    assert str(table.schema.field("embedding").type) == "list<element: float>"
    assert table["id"].to_pylist() == list(range(80))
    dense = np.array(table["embedding"].to_pylist())
    assert np.allclose(dense, f.embeddings.toarray() * f.priors[:, None], rtol=1e-6)
    guide = json.loads((tmp_path / "milvus.milvus.json").read_text())
    assert guide["fields"][2] == {"field_name": "embedding", "datatype": "FLOAT_VECTOR", "dim": 30}


def test_milvus_writes_non_negative_embeddings_as_a_sparse_struct_column(tmp_path):
    f = random_factors(21, 80, 30, 0.15)
    f = Factors(encoder=abs(f.encoder), embeddings=abs(f.embeddings), priors=f.priors, item_ids=f.item_ids)
    export(Index.build(f), "milvus", str(tmp_path / "milvus.parquet"))
    table = pq.read_table(tmp_path / "milvus.parquet")
    assert str(table.schema.field("embedding").type) == \
        "struct<indices: list<element: uint32>, values: list<element: float>>"
    assert json.loads(table.schema.metadata[b"sparseidx"])["vector_field"] == "sparse"
    for (dims, vals), cell in zip(folded_rows_of(f), table["embedding"].to_pylist()):
        assert cell["indices"] == dims.tolist() + [30] and np.allclose(cell["values"], vals.tolist() + [1.0])


def test_vespa_feed_is_put_operations_with_mapped_tensor_cells(index, tmp_path):
    idx, f = index
    export(idx, "vespa", str(tmp_path / "feed.jsonl"))
    docs = [json.loads(line) for line in (tmp_path / "feed.jsonl").read_text().splitlines()]
    for doc, (dims, vals), item in zip(docs, folded_rows_of(f), f.item_ids):
        assert doc["put"] == f"id:sparseidx:item::{item}"
        cells = doc["fields"]["embedding"]
        assert list(cells) == [str(d) for d in dims] and np.allclose(list(cells.values()), vals)
    assert "rank-profile sparseidx" in (tmp_path / "feed.sd").read_text()


def test_elasticsearch_keeps_signed_weights_as_keyword_entries(index, tmp_path):
    idx, f = index
    export(idx, "elasticsearch", str(tmp_path / "bulk.ndjson"))
    lines = (tmp_path / "bulk.ndjson").read_text().splitlines()
    assert len(lines) == 160
    for action, doc, (dims, vals), item in zip(lines[::2], lines[1::2], folded_rows_of(f), f.item_ids):
        assert json.loads(action) == {"index": {"_index": "items", "_id": str(item)}}
        entries = [e.split(":") for e in json.loads(doc)["embedding"]]
        assert [int(d) for d, _ in entries] == dims.tolist()
        assert np.allclose([float(v) for _, v in entries], vals)
    assert "script_score" in json.loads((tmp_path / "bulk.elasticsearch.json").read_text())["query"]["query"]


def test_feast_repository_layout(index, tmp_path):
    idx, f = index
    export(idx, "feast", str(tmp_path / "repo"))
    repo = tmp_path / "repo"
    assert sorted(os.listdir(repo)) == [".feastignore", "data", "feature_store.yaml", "features.py"]
    assert "type: sqlite" in (repo / "feature_store.yaml").read_text()
    code = (repo / "features.py").read_text()
    assert 'Field(name="indices", dtype=Array(Int32))' in code and "vector_index" not in code
    compile(code, "features.py", "exec")
    table = pq.read_table(repo / "data" / "items.parquet")
    assert str(table.schema.field("indices").type) == "list<element: int32>"
    assert table.num_rows == 80 and "event_timestamp" in table.column_names
    assert table["encoder_indices"].to_pylist()[3] == f.encoder[3].indices.tolist()


FEAST_BIN = os.environ.get("SPARSEIDX_FEAST_BIN") or shutil.which("feast")
FEAST_BIN = FEAST_BIN and os.path.abspath(FEAST_BIN)  # the commands run inside the exported repository


@pytest.mark.skipif(FEAST_BIN is None, reason="Feast is an optional extra: pip install 'sparseidx[feast]', or "
                                              "point SPARSEIDX_FEAST_BIN at a feast executable (make test does)")
def test_feast_apply_materialize_and_online_read_round_trip(index, tmp_path):
    idx, f = index
    export(idx, "feast", str(tmp_path / "repo"))
    feast = FEAST_BIN
    python = os.path.join(os.path.dirname(feast), "python")  # the interpreter Feast is installed in
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([feast, "apply"], cwd=tmp_path / "repo", check=True, env=env, capture_output=True)
    subprocess.run([feast, "materialize-incremental", "2100-01-01T00:00:00"], cwd=tmp_path / "repo", check=True,
                   env=env, capture_output=True)
    script = ("import json, sys; from feast import FeatureStore; s = FeatureStore('.'); "
              "r = s.get_online_features(features=['item_embeddings:indices', 'item_embeddings:values', "
              "'item_embeddings:encoder_indices', 'item_embeddings:encoder_values', 'item_embeddings:prior'], "
              "entity_rows=[{'item_id': int(i)} for i in sys.argv[1:]]).to_dict(); print(json.dumps(r))")
    out = subprocess.run([python, "-c", script, *map(str, f.item_ids[:10])], cwd=tmp_path / "repo", check=True,
                         env=env, capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for i, (dims, vals) in enumerate(rows_of(f)[:10]):
        assert got["indices"][i] == dims.tolist()
        assert np.array_equal(np.array(got["values"][i], dtype=np.float32), vals)
        assert got["encoder_indices"][i] == f.encoder[i].indices.tolist()
        assert np.array_equal(np.array(got["encoder_values"][i], dtype=np.float32), f.encoder[i].data)
        assert np.float32(got["prior"][i]) == f.priors[i]


def test_errors_and_atomic_outputs(index, tmp_path):
    idx, _ = index
    export(idx, "qdrant", str(tmp_path / "p.jsonl"))
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        export(idx, "qdrant", str(tmp_path / "p.jsonl"))
    with pytest.raises(DataError, match="unknown export target 'nope'"):
        export(idx, "nope", str(tmp_path / "x"))
    with pytest.raises(DataError, match="--users.*Parquet only"):
        export(idx, "qdrant", str(tmp_path / "q.jsonl"), users="whatever")
    with pytest.raises(DataError, match="no such file"):
        export(idx, "parquet", str(tmp_path / "i.parquet"), users=str(tmp_path / "nope.txt"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left
    pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="no sparseidx metadata"):
        read_parquet_factors(str(tmp_path / "plain.parquet"))


def test_cli_export(tmp_path):
    X = random_interactions(60, 30, seed=1)
    write_lines(tmp_path / "train.txt", X)
    runner = CliRunner()
    assert runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--l2", "5", "--k", "5",
                               "--out", str(tmp_path / "idx")]).exit_code == 0
    res = runner.invoke(cli, ["export", str(tmp_path / "idx"), "--to", "parquet", "--out",
                              str(tmp_path / "items.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["items"] == 30
    res = runner.invoke(cli, ["export", str(tmp_path / "idx"), "--to", "elasticsearch", "--out",
                              str(tmp_path / "b.ndjson")])
    assert res.exit_code == 0 and "b.elasticsearch.json" in res.output
    res = runner.invoke(cli, ["export", str(tmp_path / "idx"), "--to", "nope", "--out", "x"])
    assert res.exit_code == 2
    assert "pgvector" in runner.invoke(cli, ["export", "--help"]).output
    assert sys.modules.get("feast") is None  # exporting never imports the optional Feast package
