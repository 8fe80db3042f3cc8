"""Batch recommendations and the Gram matrix on Dask: a LocalCluster of 2 worker processes on loopback."""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from helpers import random_interactions, write_lines

from sparseidx.batch import recommend_file
from sparseidx.errors import DataError, OutputError
from sparseidx.index import Index
from sparseidx.models.cholesky import Cholesky

distributed = pytest.importorskip("distributed")
from sparseidx.distributed import gram, parse_scheduler, recommend


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=50)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    X = random_interactions(n_users=300, n_items=60, density=0.1, seed=3)
    path = str(tmp_path_factory.mktemp("idx") / "small.idx")
    Index.build(Cholesky(l2=5.0, k=20).fit(X).factors_).write(path)
    return path


def _dataset(root, n_files: int, users_per_file: int, seed: int = 0) -> np.ndarray:
    """A histories dataset of lines and Parquet files; returns every user id (one file each, some empty)."""
    os.makedirs(root)
    X = random_interactions(n_users=n_files * users_per_file, n_items=60, density=0.08, seed=seed)
    X = sp.csr_matrix(X.multiply((np.arange(X.shape[0]) % 17 != 0)[:, None]))  # users with no items
    users = np.arange(X.shape[0]) * 7 + 1
    for f in range(n_files):
        rows = slice(f * users_per_file, (f + 1) * users_per_file)
        if f % 2:
            part = sp.coo_matrix(X[rows])
            pq.write_table(pa.table({"user": users[rows][part.row], "item": part.col.astype(np.int64)}),
                           os.path.join(root, f"f{f:03d}.parquet"))
        else:
            write_lines(os.path.join(root, f"f{f:03d}.txt"), X[rows], user_ids=users[rows])
    open(os.path.join(root, "_SUCCESS"), "w").close()  # a writer's marker: skipped
    in_lines_file = (np.arange(X.shape[0]) // users_per_file) % 2 == 0  # lines files list users with no items
    return users[(X.getnnz(axis=1) > 0) | in_lines_file]


def _read(out) -> pa.Table:
    return pq.read_table(out).sort_by("user_id")


def test_answers_equal_single_process(client, index_path, tmp_path):
    _dataset(tmp_path / "users", 5, 40)
    out = str(tmp_path / "recs")
    summary = recommend(index_path, tmp_path / "users", out, k=7, scheduler=client)
    assert os.path.exists(os.path.join(out, "_SUCCESS")) and summary["partitions"] == 5
    got = _read(out)
    assert got.column_names == ["user_id", "item_ids", "scores", "popular"]
    ref = []
    for i, part in enumerate(sorted(glob.glob(str(tmp_path / "users" / "f*")))):
        recommend_file(Index.open(index_path), part, str(tmp_path / f"ref{i}.parquet"), k=7)
        ref.append(pq.read_table(tmp_path / f"ref{i}.parquet"))
    want = pa.concat_tables(ref).sort_by("user_id")
    assert got.num_rows == summary["users"] == len(set(got["user_id"].to_pylist()))
    for col in want.column_names:
        assert got[col].to_pylist() == want[col].to_pylist(), col
    with open(os.path.join(out, "_summary.json")) as fh:
        assert json.load(fh)["users"] == got.num_rows


def test_output_rules(client, index_path, tmp_path):
    _dataset(tmp_path / "users", 2, 10)
    out = tmp_path / "recs"
    recommend(index_path, tmp_path / "users", out, k=3, scheduler=client)
    with pytest.raises(OutputError, match="already exists"):
        recommend(index_path, tmp_path / "users", out, k=3, scheduler=client)
    recommend(index_path, tmp_path / "users", out, k=4, scheduler=client, overwrite=True)
    assert json.loads((out / "_summary.json").read_text())["k"] == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="refusing to overwrite"):
        recommend(index_path, tmp_path / "users", tmp_path / "mine", k=3, scheduler=client, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(DataError, match="overlap"):
        recommend(index_path, tmp_path / "users", tmp_path / "users" / "recs", scheduler=client)
    (tmp_path / "users" / "f009.txt").write_text("5 not-an-item\n")
    with pytest.raises(DataError, match="f009.txt"):
        recommend(index_path, tmp_path / "users", tmp_path / "failed", scheduler=client)
    assert not os.path.exists(tmp_path / "failed")
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".failed")]  # nothing new left behind


@pytest.mark.parametrize("spec", ["local:0", "local:x", "tcp://host", "tcp://a b:1", "tcp://h:70000", "http://h:1"])
def test_bad_scheduler_is_one_line(spec):
    with pytest.raises(DataError, match="is not local:N"):
        parse_scheduler(spec)


def test_index_url_copied_once(client, index_path, tmp_path, monkeypatch):
    pytest.importorskip("fsspec")
    _dataset(tmp_path / "users", 2, 10)
    monkeypatch.setenv("SPARSEIDX_INDEX_CACHE", str(tmp_path / "cache"))
    client.run(os.environ.__setitem__, "SPARSEIDX_INDEX_CACHE", str(tmp_path / "cache"))
    recommend("file://" + index_path, tmp_path / "users", tmp_path / "a", k=5, scheduler=client)
    recommend(index_path, tmp_path / "users", tmp_path / "b", k=5, scheduler=client)
    assert len(os.listdir(tmp_path / "cache")) == 1  # one copy, keyed by the manifest's checksum
    assert _read(tmp_path / "a").equals(_read(tmp_path / "b"))


def test_worker_killed_mid_job(client, index_path, tmp_path):
    users = _dataset(tmp_path / "users", 24, 150, seed=5)
    out = tmp_path / "recs"
    pids = list(client.run(os.getpid).values())
    done, failure = threading.Event(), []

    def job():
        try:
            recommend(index_path, tmp_path / "users", out, k=10, scheduler=client)
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            failure.append(exc)
        done.set()

    threading.Thread(target=job, daemon=True).start()
    deadline = time.monotonic() + 30
    while not glob.glob(str(tmp_path / ".recs.tmp-*" / "part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not done.is_set(), "the job ended before a worker could be killed"
    os.kill(pids[0], signal.SIGKILL)
    assert done.wait(60) and not failure, failure
    got = pq.read_table(out)
    assert sorted(got["user_id"].to_pylist()) == sorted(users.tolist())  # every user exactly once
    assert (out / "_SUCCESS").exists()
    client.wait_for_workers(2, timeout=30)


def test_gram_equals_single_machine(client, tmp_path):
    X = random_interactions(n_users=400, n_items=50, density=0.1, seed=9)
    item_ids = np.arange(50) * 3 + 100
    (tmp_path / "data").mkdir()
    for f in range(4):
        rows = slice(f * 100, (f + 1) * 100)
        write_lines(tmp_path / "data" / f"p{f}.txt", X[rows], user_ids=np.arange(400)[rows], item_ids=item_ids)
    result = gram(tmp_path / "data", client, split_every=2)
    np.testing.assert_array_equal(result.item_ids, item_ids)
    assert (result.G != (X.T @ X).tocsr()).nnz == 0
    np.testing.assert_array_equal(result.counts, X.getnnz(axis=0))
    assert (result.n_users, result.nnz) == (400, X.nnz)
    for order in ("popularity", "cooccurrence"):
        one = Cholesky(l2=5.0, k=10, order=order).fit(X, item_ids).factors_
        many = Cholesky(l2=5.0, k=10, order=order).fit_gram(result.G, result.counts, result.item_ids).factors_
        assert (one.encoder != many.encoder).nnz == 0
        np.testing.assert_array_equal(one.priors, many.priors)
        np.testing.assert_array_equal(one.popularity, many.popularity)


def test_a_user_in_two_partitions_is_refused_and_nothing_is_written(client, index_path, tmp_path):
    users = tmp_path / "split"
    os.makedirs(users)
    (users / "a.txt").write_text("1 0 1\n5 2 3\n")
    (users / "b.txt").write_text("6 4\n5 7\n")
    out = tmp_path / "recs"
    with pytest.raises(DataError, match=r"^user '5' is in partitions .*a.txt and .*b.txt and would be answered in "
                                        "each from part of its history"):
        recommend(index_path, users, out, k=3, scheduler=client)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["split"]


def test_gram_refuses_a_user_in_two_partitions(client, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("u1 10 11\nu5 12\n")
    (tmp_path / "data" / "b.txt").write_text("u6 13\nu5 14 15\n")
    with pytest.raises(DataError, match=r"^user 'u5' has interactions in partitions .*a.txt and .*b.txt: X\^T X sums"):
        gram(tmp_path / "data", client)
    (tmp_path / "data" / "b.txt").write_text("u6 13\nu7 14 15\n")
    assert gram(tmp_path / "data", client).n_users == 4
