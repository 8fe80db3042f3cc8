"""The command line end to end: exit codes, messages, JSON and tables."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import random_interactions, write_lines

from sparseidx import Factors, Index
from sparseidx_cli.main import cli


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    X = random_interactions(120, 60, seed=11)
    rng = np.random.default_rng(111)
    T = sp.csr_matrix((rng.random(X.shape) < 0.05) & (X.toarray() == 0), dtype=np.float32)
    write_lines(d / "train.txt", X)
    write_lines(d / "test.txt", T)
    runner = CliRunner()
    res = runner.invoke(cli, ["build", str(d / "train.txt"), "--out", str(d / "idx"), "--l2", "5", "--k", "10"])
    assert res.exit_code == 0, res.output
    return d


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_help_and_version():
    res = run("--help")
    assert res.exit_code == 0 and "sparseidx build" in res.output
    assert "0.1.0" in run("--version").output
    for cmd in ("build", "query", "evaluate", "info", "verify"):
        assert run(cmd, "--help").exit_code == 0


def test_query_table_and_json(split):
    res = run("query", split / "idx", "--history", 1, 2, 3, "-k", 5)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].split() == ["rank", "item_id", "score"]  # notes go to stderr
    res = run("query", split / "idx", "--history", "1,2,3", "-k", 5, "--json")
    payload = json.loads(res.stdout)
    ids = [r["item_id"] for r in payload["items"]]
    assert len(ids) == 5 and not {1, 2, 3} & set(ids)
    assert payload["popular"] is False


def test_empty_history_is_flagged_popular(split):
    payload = json.loads(run("query", split / "idx", "--history", "--json").stdout)
    assert payload["popular"] is True and len(payload["items"]) == 20


def test_unknown_items_error_or_skip(split):
    res = run("query", split / "idx", "--history", 1, 12345)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == ("Error: unknown item id(s) 12345 (query 1); "
                                                   "use --skip-unknown to ignore them")
    res = run("query", split / "idx", "--history", 1, 12345, "--skip-unknown", "--json")
    assert res.exit_code == 0 and "skipped 1 unknown" in res.stderr


def test_batch_query_writes_parquet_in_input_order(split, tmp_path):
    out = tmp_path / "recs.parquet"
    res = run("query", split / "idx", "--users", split / "train.txt", "--out", out, "-k", 7, "--threads", 2)
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "item_ids", "scores", "popular"]
    assert table["user_id"].to_pylist() == list(range(120))
    single = json.loads(run("query", split / "idx", "--history", *_history(split, 5), "-k", 7, "--json").stdout)
    assert table["item_ids"][5].as_py() == [r["item_id"] for r in single["items"]]


def _history(split, user):
    line = (split / "train.txt").read_text().splitlines()[user].split()
    return line[1:]


def test_query_usage_errors(split):
    assert run("query", split / "idx").exit_code == 2
    assert run("query", split / "idx", "--users", split / "train.txt").exit_code == 2
    assert run("query", split / "idx", "--history", 1, "--query-mass", 2).exit_code == 2


def test_evaluate_json(tmp_path):
    """Metrics of a 6-item index whose ranking is fixed (items 0, 1, ..., 5, minus the history), by hand.

    One dimension: E_i = 1, V_i = 6 - i, so every history scores item i as 6 - i. BARS definitions
    (sparseidx/evaluate.py): Recall@k = hits / |test|, Precision@k = hits / k, NDCG@k with the
    ideal DCG over min(|test|, k) positions, MAP@k = sum of Precision@r over hit ranks r / min(|test|, k).
    """
    n = 6
    factors = Factors(encoder=sp.csr_matrix(np.ones((n, 1))), embeddings=sp.csr_matrix(np.arange(n, 0, -1.0)[:, None]),
                      priors=np.ones(n), item_ids=np.arange(n))
    Index.build(factors).write(str(tmp_path / "idx"))
    (tmp_path / "train.txt").write_text("1 0\n2 1 2\n3 3\n4 5\n")
    (tmp_path / "test.txt").write_text("1 2 5\n2 0\n3 4 1 0\n")  # user 4 has no test items: not averaged
    res = run("evaluate", tmp_path / "idx", "--train", tmp_path / "train.txt", "--test", tmp_path / "test.txt",
              "-k", 2, "-k", 4, "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    d = {r: 1 / np.log2(r + 1) for r in range(1, 5)}  # the discount of rank r
    # user 1 ranks 1 2 3 4 5 (test 2, 5): a hit at rank 2 |  user 2 ranks 0 3 4 5 (test 0): a hit at rank 1
    # user 3 ranks 0 1 2 4 5 (test 4, 1, 0): hits at ranks 1, 2 and 4
    expected = {
        "recall@2": (1 / 2 + 1 + 2 / 3) / 3, "recall@4": (1 / 2 + 1 + 3 / 3) / 3,
        "precision@2": (1 / 2 + 1 / 2 + 2 / 2) / 3, "precision@4": (1 / 4 + 1 / 4 + 3 / 4) / 3,
        "ndcg@2": (d[2] / (d[1] + d[2]) + 1 + 1) / 3,
        "ndcg@4": (d[2] / (d[1] + d[2]) + 1 + (d[1] + d[2] + d[4]) / (d[1] + d[2] + d[3])) / 3,
        "map@2": ((1 / 2) / 2 + 1 + (1 / 1 + 2 / 2) / 2) / 3,
        "map@4": ((1 / 2) / 2 + 1 + (1 / 1 + 2 / 2 + 3 / 4) / 3) / 3,
        "coverage": 1.0,  # every item scores above zero
        "users": 3,
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def test_info_and_verify(split, tmp_path):
    info = json.loads(run("info", split / "idx", "--json").stdout)
    assert info["model"] == "chol" and info["params"]["k"] == 10 and info["format_version"] == 1
    assert "params.beta" in run("info", split / "idx").output
    res = run("verify", split / "idx")
    assert res.exit_code == 0 and res.output.startswith("OK:")
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(split / "idx", bad)
    (bad / "items.arrow").write_bytes(b"garbage")
    res = run("verify", bad)
    assert res.exit_code == 1 and "items.arrow" in res.output
    res = run("query", bad, "--history", 1)
    assert res.exit_code == 1 and "refusing a damaged index" in res.output


def test_build_errors(split, tmp_path):
    res = run("build", split / "train.txt", "--out", split / "idx")
    assert res.exit_code == 1 and "already exists; pass --overwrite" in res.output
    res = run("build", split / "train.txt", "--out", tmp_path / "x", "--dims", 5)
    assert res.exit_code == 2 and "--model chol does not take --dims" in res.output
    res = run("build", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "give INTERACTIONS" in res.output
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n1 2 q\n")
    res = run("build", bad, "--out", tmp_path / "x")
    assert res.exit_code == 1 and "bad.txt:2: malformed line" in res.output
    res = run("build", split / "train.txt", "--out", tmp_path / "x", "--beta", "two")
    assert res.exit_code == 2 and "'two' is not a finite number > 1 or 'auto'" in res.output
    res = run("build", split / "train.txt", "--out", tmp_path / "x", "--k", 0)
    assert res.exit_code == 2 and "Invalid value for --k: k must be an integer >= 1 or None, got 0" in res.output
    res = run("build", split / "train.txt", "--out", tmp_path / "x", "--model", "sansa", "--density", 2)
    assert res.exit_code == 2 and "density must be a finite number in (0, 1] or None, got 2.0" in res.output
    res = run("build", split / "train.txt", "--out", tmp_path / "x", "--model", "celsa", "--dims", 8,
              "--nnz-per-item", 9)
    assert res.exit_code == 2 and "--nnz-per-item: nnz_per_item must be between 1 and dims (8)" in res.output
    assert not (tmp_path / "x").exists()


def test_build_from_imported_embeddings(tmp_path, split):
    rng = np.random.default_rng(0)
    M = sp.random(60, 9, density=0.3, random_state=rng, format="csr")
    sp.save_npz(tmp_path / "emb.npz", M)
    res = run("build", split / "train.txt", "--embeddings", tmp_path / "emb.npz", "--out", tmp_path / "imp", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"] == "imported"
    payload = json.loads(run("query", tmp_path / "imp", "--history", 3, 4, "--json", "-k", 60).stdout)
    scores = {r["item_id"]: r["score"] for r in payload["items"]}
    u = np.asarray(M[3].toarray() + M[4].toarray()).ravel()
    want = M @ u
    for item, s in scores.items():
        assert s == pytest.approx(want[item], abs=1e-5)
    np.savez(tmp_path / "bad.npz", encoder=np.ones((3, 2)))
    res = run("build", "--embeddings", tmp_path / "bad.npz", "--out", tmp_path / "imp2", "--json")
    assert res.exit_code == 0  # a single dense matrix serves as both E and V
    np.savez(tmp_path / "bad2.npz", encoder_data=np.ones(2))
    res = run("build", "--embeddings", tmp_path / "bad2.npz", "--out", tmp_path / "imp3")
    assert res.exit_code == 1 and "'encoder' is incomplete" in res.output


def test_bench_writes_report_tables_and_plots(split, tmp_path):
    out = tmp_path / "bench"
    res = run("bench", split / "idx", "--train", split / "train.txt", "--test", split / "test.txt", "--out", out,
              "--peers", "scipy", "--threads", "1,2", "--latency-queries", "20", "--sweep", "quick",
              "--postings-per-dim", "3", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    rows = {(r["method"], r["setting"]): r for r in report["rows"]}
    assert rows[("sparseidx", "exact")]["recall_vs_exact"] == 1.0
    assert rows[("scipy-exact", "exact")]["recall_vs_exact"] == 1.0
    # both exact methods rank the same items, so their test quality is the same
    assert rows[("sparseidx", "exact")]["recall@20"] == pytest.approx(rows[("scipy-exact", "exact")]["recall@20"])
    md = (out / "report.md").read_text()
    assert "| sparseidx | exact | 1.0000 |" in md and "## sparseidx against the cost model" in md
    exact = rows[("sparseidx", "exact")]
    assert exact["batch_over_model"] == pytest.approx(exact["batch_us"] / exact["cost_model_us"])
    assert exact["host_ns_per_posting"] > 0 and "cost_model_us" not in rows[("scipy-exact", "exact")]
    # the statically pruned copy: fewer postings, served by the same engine, measured against the full exact answer
    static = rows[("sparseidx postings-per-dim=3", "exact")]
    assert static["postings_per_query"] < exact["postings_per_query"] and static["index_bytes"] != exact["index_bytes"]
    assert 0.0 < static["recall_vs_exact"] < 1.0 and "batch_over_model" in static
    eligible = [r for r in report["rows"] if r["method"] == "sparseidx" and r["recall_vs_exact"] >= 0.99]
    fastest = min(eligible, key=lambda r: r["p50_us"])
    assert report["meta"]["summary"]["best"]["sparseidx"]["setting"] == fastest["setting"]
    for name in ("latency.png", "batch_1t.png", "batch_2t.png"):
        assert (out / name).stat().st_size > 1000


def test_bench_errors(split, tmp_path):
    res = run("bench", split / "idx", "--train", split / "train.txt", "--test", split / "test.txt",
              "--out", tmp_path / "b", "--postings-per-dim", "0")
    assert res.exit_code == 2 and "give positive integers" in res.output
    res = run("bench", split / "idx", "--train", split / "train.txt", "--test", split / "test.txt",
              "--out", tmp_path / "b", "--peers", "nope")
    assert res.exit_code == 2 and "unknown peer" in res.output
    res = run("bench", split / "idx", "--train", split / "train.txt", "--test", split / "test.txt",
              "--out", tmp_path / "b", "--peers", "faiss")
    assert res.exit_code != 0 and "--dense-index" in res.output
