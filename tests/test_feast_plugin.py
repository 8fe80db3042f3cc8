"""The sparseidx Feast online store, driven through the real Feast (its own venv) in one subprocess.

``feast apply`` and ``feast materialize-incremental`` (Feast's CLI commands) index the item view;
``retrieve_online_documents_v2`` must then answer what ``Index.search`` answers, in the same
order with the same scores; ordinary features keep being served from SQLite; a re-materialize
swaps the index while a reader keeps querying.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import random_factors, random_histories
from sparseidx_cli.main import cli

from sparseidx import Index

FEAST_BIN = os.environ.get("SPARSEIDX_FEAST_BIN") or shutil.which("feast")
FEAST_BIN = FEAST_BIN and os.path.abspath(FEAST_BIN)
K = 10
OPTIONS = {"prune": 0.3, "candidates": 12}  # candidates from the store config, prune from the view's tag

USERS_PY = '''
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Int64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
user_stats = FeatureView(name="user_stats", entities=[user], ttl=timedelta(days=3650),
                         schema=[Field(name="age", dtype=Int64)], online=True,
                         source=FileSource(name="users", path="data/users.parquet", timestamp_field="event_timestamp"))
'''

DRIVER = r'''
import json, shutil, sys, threading, time
from datetime import datetime
from feast import FeatureStore
from feast.cli.cli import cli

spec = json.load(open(sys.argv[1]))
for args in (["apply"], ["materialize-incremental", "2100-01-01T00:00:00"]):
    cli.main(args, standalone_mode=False)  # the commands of `feast apply` / `feast materialize-incremental`
store = FeatureStore(".")

def top(s, **query):
    r = s.retrieve_online_documents_v2(features=["item_embeddings:prior"], top_k=spec["k"], **query).to_dict()
    return [r["item_id"], r["distance"], r["prior"]]

def attempt(s, **query):
    try:
        return top(s, **query)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

out = {"history": [top(store, query_string=json.dumps({"history": h})) for h in spec["histories"]],
       "dense": [top(store, query=u) for u in spec["dense"]],
       "sparse": [top(store, query_string=json.dumps(q)) for q in spec["sparse"]],
       "errors": [attempt(store, query_string=q) for q in spec["bad"]] + [attempt(store, query=[1.0, 2.0])],
       "ages": store.get_online_features(features=["user_stats:age"],
                                         entity_rows=[{"user_id": u} for u in spec["users"]]).to_dict()["age"]}
shutil.copy(spec["new_items"], "data/items.parquet")
reader, seen, done = FeatureStore("."), [], threading.Event()

def read():
    while not done.is_set():
        seen.append(attempt(reader, query_string=json.dumps({"history": spec["histories"][0]})))

thread = threading.Thread(target=read)
thread.start()
time.sleep(0.3)
FeatureStore(".").materialize(start_date=datetime(2000, 1, 1), end_date=datetime(2100, 1, 1))
time.sleep(0.3)
done.set()
thread.join()
out["during"] = seen
out["after"] = [top(reader, query_string=json.dumps({"history": h})) for h in spec["histories"]]
print(json.dumps(out))
'''


def export_plugin_repo(index_path, out, *extra):
    """``sparseidx export --to feast --feast-store sparseidx``; returns the CLI result."""
    return CliRunner().invoke(cli, ["export", str(index_path), "--to", "feast", "--feast-store", "sparseidx",
                                    "--out", str(out), *extra])


def test_export_writes_a_repository_configured_for_the_plugin(tmp_path):
    Index.build(random_factors(3, 40, 12, 0.3)).write(tmp_path / "idx")
    res = export_plugin_repo(tmp_path / "idx", tmp_path / "repo")
    assert res.exit_code == 0, res.output
    yaml = (tmp_path / "repo" / "feature_store.yaml").read_text()
    assert "type: sparseidx.integrations.feast.SparseIdxOnlineStore" in yaml and "index_path: data/sparseidx" in yaml
    assert '"sparseidx": "items"' in (tmp_path / "repo" / "features.py").read_text()
    (tmp_path / "repo" / "data" / "sparseidx" / "item_embeddings.idx").mkdir(parents=True)  # as materialize makes
    assert export_plugin_repo(tmp_path / "idx", tmp_path / "repo", "--overwrite").exit_code == 0
    (tmp_path / "repo" / "notes.txt").write_text("mine")
    res = export_plugin_repo(tmp_path / "idx", tmp_path / "repo", "--overwrite")
    assert res.exit_code != 0 and "neither sparseidx nor feast wrote" in res.output
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "idx"), "--to", "parquet", "--feast-store", "sparseidx",
                                   "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code != 0 and "goes with --to feast" in res.output


def expected(index, histories, k, **knobs):
    """(item ids, scores) of ``Index.search`` per history, padding dropped."""
    scores, ids = index.search(histories, k, **knobs)
    return [(index.item_ids[i[i >= 0]].tolist(), s[i >= 0]) for s, i in zip(scores, ids)]


def assert_same(got, want):
    """The plugin's answers (ids, distances, priors) equal the engine's (ids, scores) exactly."""
    assert len(got) == len(want)
    for (ids, dist, _), (want_ids, want_scores) in zip(got, want):
        assert ids == want_ids
        assert np.array_equal(np.array(dist, dtype=np.float32), want_scores)


@pytest.mark.skipif(FEAST_BIN is None, reason="Feast is an optional extra (make feast-setup); "
                                              "point SPARSEIDX_FEAST_BIN at its feast executable (make test does)")
def test_feast_retrieval_equals_index_search_and_survives_a_swap(tmp_path):
    old, new = random_factors(21, 300, 60, 0.15), random_factors(22, 300, 60, 0.15)
    for name, f in (("old", old), ("new", new)):
        Index.build(f).write(tmp_path / f"{name}.idx")
    old_idx, new_idx = Index.open(tmp_path / "old.idx"), Index.open(tmp_path / "new.idx")
    repo = tmp_path / "repo"
    assert export_plugin_repo(tmp_path / "old.idx", repo).exit_code == 0
    assert export_plugin_repo(tmp_path / "new.idx", tmp_path / "next").exit_code == 0
    yaml = (repo / "feature_store.yaml").read_text()
    (repo / "feature_store.yaml").write_text(yaml.replace("  index_path: data/sparseidx\n", "  index_path: "
                                             "data/sparseidx\n  search_options: {candidates: 12}\n"))
    with open(repo / "features.py", "a") as fh:
        fh.write("item_embeddings.tags['sparseidx.options'] = '{\"prune\": 0.3}'\n")
    (repo / "users.py").write_text(USERS_PY)
    ages = np.arange(20) + 18
    pq.write_table(pa.table({"user_id": np.arange(20, dtype=np.int64), "age": ages,
                             "event_timestamp": pa.array([1_600_000_000] * 20, pa.timestamp("s", tz="UTC"))}),
                   repo / "data" / "users.parquet")
    X = random_histories(5, 100, 300, 6)
    histories = [old.item_ids[X[u].indices].tolist() for u in range(100)]
    U = (X[:5] @ old.encoder).toarray().astype(np.float32)
    Us = (X[5:10] @ old.encoder).tocsr()
    bad = ["not json", '{"history": [7]}', '{"indices": [-1], "values": [1.0]}', '{"history": [0], "k": 3}']
    spec = {"k": K, "histories": histories, "dense": U.tolist(), "users": [3, 7, 99], "bad": bad,
            "sparse": [{"indices": Us[u].indices.tolist(), "values": Us[u].data.tolist()} for u in range(5)],
            "new_items": str(tmp_path / "next" / "data" / "items.parquet")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "driver.py").write_text(DRIVER)
    python = os.path.join(os.path.dirname(FEAST_BIN), "python")
    run = subprocess.run([python, str(tmp_path / "driver.py"), str(tmp_path / "spec.json")], check=False, cwd=repo,
                         env={**os.environ, "FEAST_USAGE": "False"}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])

    want = expected(old_idx, X, K, **OPTIONS)
    assert_same(out["history"], want)
    assert [w[0] for w in want] != [e[0] for e in expected(old_idx, X, K)]  # the pruned path ran
    for (ids, _, prior) in out["history"]:
        assert np.array_equal(np.array(prior, dtype=np.float32), old_idx.priors[[i // 10 for i in ids]])
    vectors = [expected_vectors(old_idx, U, **OPTIONS), expected_vectors(old_idx, Us, **OPTIONS)]
    assert_same(out["dense"], vectors[0])
    assert_same(out["sparse"], vectors[1])
    assert out["ages"] == [21, 25, None]  # ordinary features served beside the index
    assert all(e.count("\n") == 0 and e.startswith(("DataError", "UnknownItemError")) for e in out["errors"]), \
        out["errors"]

    before, after = expected(old_idx, X[:1], K, **OPTIONS)[0], expected(new_idx, X[:1], K, **OPTIONS)[0]
    assert before[0] != after[0]
    assert len(out["during"]) >= 2 and not [a for a in out["during"] if isinstance(a, str)], \
        {a for a in out["during"] if isinstance(a, str)}
    answers = [(ids, np.array(dist, dtype=np.float32)) for ids, dist, _ in out["during"]]
    for ids, dist in answers:  # every read saw one whole index, the old or the new one
        assert (ids, dist.tolist()) in [(before[0], before[1].tolist()), (after[0], after[1].tolist())]
    assert answers[0][0] == before[0] and answers[-1][0] == after[0]
    assert_same(out["after"], expected(new_idx, X, K, **OPTIONS))


def expected_vectors(index, U, **knobs):
    """(item ids, scores) of ``search_vectors`` per user vector."""
    scores, ids = index.search_vectors(U, K, **knobs)
    return [(index.item_ids[i[i >= 0]].tolist(), s[i >= 0]) for s, i in zip(scores, ids)]
