"""A recall target instead of a threshold: calibration, the index's operating point, its use and its checks."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from helpers import random_factors, random_histories, random_interactions, write_lines

from sparseidx import Index
from sparseidx.errors import DataError, IndexFormatError
from sparseidx.factors import DenseFactors
from sparseidx.index.calibrate import _recall, calibrate
from sparseidx_cli.main import cli


def recall(ids, exact):
    """Mean share of each row's exact items found (an independent loop)."""
    shares = []
    for got, want in zip(ids, exact):
        want = set(want[want >= 0].tolist())
        shares.append(len(want & set(got[got >= 0].tolist())) / max(len(want), 1))
    return float(np.mean(shares))


def test_recall_helper_equals_a_plain_loop():
    rng = np.random.default_rng(0)
    rows = [rng.permutation(30)[:20] for _ in range(40)]  # answers hold distinct items, -1 padded
    exact = np.array([np.where(np.arange(10) < rng.integers(3, 11), r[:10], -1) for r in rows])
    ids = np.array([np.where(np.arange(10) < rng.integers(0, 11), r[rng.integers(0, 6):][:10], -1) for r in rows])
    assert _recall(ids, exact, exact >= 0) == pytest.approx(recall(ids, exact))


@pytest.mark.parametrize("target", [0.8, 0.95, 1.0])
def test_calibration_picks_the_fastest_setting_that_reaches_the_target(target):
    index = Index.build(random_factors(1, 400, 60, 0.2))
    H = random_histories(2, 300, 400, 8)
    point = calibrate(index, H, target, k=10)
    exact = index.search(H, 10, index.Options())[1]
    grid = index.tuning_grid(10)
    chosen = grid.index(point["knobs"])
    assert recall(index.search(H, 10, index.Options(**point["knobs"]))[1], exact) == pytest.approx(point["recall"])
    assert point["recall"] >= target
    if chosen > 0:  # the faster setting before it misses the target
        assert recall(index.search(H, 10, index.Options(**grid[chosen - 1]))[1], exact) < target
    assert point["queries"] == 300 and point["k"] == 10


def test_a_recall_target_in_the_options_calibrates_once_on_the_batch_and_is_refused_with_knobs():
    index = Index.build(random_factors(1, 400, 60, 0.2))
    H = random_histories(3, 200, 400, 8)
    scores, ids = index.search(H, 10, target_recall=0.9)
    knobs = index._calibrated[(0.9, 10)]
    assert np.array_equal(ids, index.search(H, 10, index.Options(**knobs))[1])
    assert np.array_equal(index.search(H[:1], 10, target_recall=0.9)[1], ids[:1])  # reused, not recalibrated
    with pytest.raises(DataError, match="give target_recall or the knobs \\(prune\\), not both"):
        index.search(H, 10, target_recall=0.9, prune=0.01)
    with pytest.raises(DataError, match="needs at least 100 non-empty histories"):
        Index.build(random_factors(1, 400, 60, 0.2)).search(H[:5], 10, target_recall=0.9)
    with pytest.raises(DataError, match="target_recall must be in"):
        index.search(H, 10, target_recall=1.5)


def test_faiss_indexes_calibrate_their_own_knob():
    f = random_factors(4, 500, 16, 1.0)
    dense = DenseFactors(encoder=f.encoder.toarray(), embeddings=f.embeddings.toarray(), priors=f.priors,
                         item_ids=f.item_ids, popularity=f.popularity)
    index = Index.build(dense, faiss_index="HNSW32,Flat")
    point = calibrate(index, random_histories(5, 200, 500, 5), 0.9, k=10)
    assert set(point["knobs"]) == {"ef_search"} and point["recall"] >= 0.9


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("target")
    write_lines(tmp / "train.txt", random_interactions(300, 120, density=0.1, seed=5))
    path = str(tmp / "t.idx")
    res = CliRunner().invoke(cli, ["build", str(tmp / "train.txt"), "--model", "chol", "--l2", "5", "--out", path,
                                   "--target-recall", "0.9", "--target-k", "10", "--json"])
    assert res.exit_code == 0, res.output
    return tmp, path, json.loads(res.stdout)


def test_build_records_the_operating_point_and_queries_use_it_by_default(built):
    tmp, path, summary = built
    point = summary["operating_point"]
    assert point["target_recall"] == 0.9 and point["k"] == 10 and point["recall"] >= 0.9
    index = Index.open(path)
    assert index.info()["operating_point"] == point
    H = random_histories(6, 50, 120, 6)
    assert np.array_equal(index.search(H, 10)[1], index.search(H, 10, index.Options(**point["knobs"]))[1])
    exact = index.search(H, 10, index.Options())[1]
    if point["knobs"]:
        assert np.array_equal(index.search(H, 10, prune=0.0)[1], exact)  # --prune 0: exact again
    # a target equal to the index's own is answered from its operating point, whatever the batch
    assert np.array_equal(index.search(H[:3], 10, target_recall=0.9)[1], index.search(H[:3], 10)[1])
    res = CliRunner().invoke(cli, ["info", path, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["operating_point"] == point


def test_build_refuses_a_target_without_histories(tmp_path):
    np.savez(tmp_path / "e.npz", encoder=np.eye(5), embeddings=np.eye(5))
    res = CliRunner().invoke(cli, ["build", "--embeddings", str(tmp_path / "e.npz"), "--out", str(tmp_path / "x"),
                                   "--target-recall", "0.9"])
    assert res.exit_code == 2 and "calibrates on the histories of INTERACTIONS" in res.output


@pytest.mark.parametrize("point,message", [
    ({"knobs": {"bogus": 1}, "k": 10, "target_recall": 0.9}, "operating_point"),
    ({"knobs": {"prune": 5.0}, "k": 10, "target_recall": 0.9}, "prune must be in"),
    ({"knobs": [], "k": 10, "target_recall": 0.9}, "operating_point needs"),
    ({"k": "10", "knobs": {}, "target_recall": 0.9}, "operating_point needs"),
])
def test_a_tampered_operating_point_is_refused_at_open(built, tmp_path, point, message):
    _, path, _ = built
    import shutil

    copy = tmp_path / "c.idx"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["operating_point"] = point
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=message):
        Index.open(str(copy))


def test_query_and_evaluate_take_a_target(built):
    tmp, path, _ = built
    write_lines(tmp / "test.txt", sp.csr_matrix(random_interactions(300, 120, density=0.03, seed=6)))
    res = CliRunner().invoke(cli, ["evaluate", path, "--train", str(tmp / "train.txt"), "--test",
                                   str(tmp / "test.txt"), "--target-recall", "0.9", "-k", "10", "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["query", path, "--history", "1", "2", "--target-recall", "0.9", "--prune",
                                   "0.1"])
    assert res.exit_code == 2 and "not both" in res.output
