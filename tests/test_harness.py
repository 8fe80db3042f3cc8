"""The benchmark harness's own arithmetic: recall against the exact answer, Pareto fronts, repeated runs."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from sparseidx.bench.calibrate import _top10, host_costs
from sparseidx.bench.harness import (batch_seconds, cost_model, markdown, pareto, recall_against, summary,
                                     write_report)


class FakeMethod:
    """Answers a batch after a scripted wait (seconds), counting the calls.

    Each query's ids are its history's first item, and postings/entries per query are
    the first item and twice it, so slices put back together can be checked.
    """

    def __init__(self, waits):
        self.waits = list(waits)
        self.calls = 0
        self.threads = []
        self.sizes = []

    def batch(self, H, k, setting, threads):
        import time

        time.sleep(self.waits[self.calls])
        self.calls += 1
        self.threads.append(threads)
        self.sizes.append(H.shape[0])
        first = H.indices[H.indptr[:-1]].astype(np.int64)
        return np.repeat(first[:, None], k, axis=1), float(first.mean()), float(2 * first.mean())


def test_batch_seconds_interleaves_thread_counts_over_slices_and_takes_medians():
    H = sp.csr_matrix((np.ones(5), np.array([0, 1, 2, 3, 9]), np.arange(6)), shape=(5, 10))
    # two slices (2 and 3 queries) per round, thread counts in turn, the order reversed on the second slice
    waits = [0.10, 0.0, 0.20, 0.0,   # round 1, calls (slice, threads) (0, 1) (0, 2) (1, 2) (1, 1): 1t 0.10, 2t 0.20
             0.05, 0.0, 0.05, 0.0,   # round 2: 1t 0.05, 2t 0.05
             0.20, 0.02, 0.02, 0.0]  # round 3: 1t 0.20, 2t 0.04
    short = FakeMethod(waits)
    ids, postings, entries, seconds = batch_seconds(short, H, 2, {}, [1, 2], long_run=1.0, chunks=2)
    assert short.calls == 12 and short.sizes[:4] == [2, 2, 3, 3]
    assert short.threads == [1, 2, 2, 1] * 3
    assert 0.10 <= seconds[1] < 0.115 and 0.05 <= seconds[2] < 0.08  # medians of 3 rounds, not means
    assert np.array_equal(ids[:, 0], [0, 1, 2, 3, 9]) and ids.shape == (5, 2)  # slices back in input order
    assert np.isclose(postings, 3.0) and np.isclose(entries, 6.0)  # per-query means weighted by slice size
    long = FakeMethod([0.05, 0.0, 0.0, 0.0])
    _, _, _, seconds = batch_seconds(long, H, 2, {}, [1, 2], long_run=0.04, chunks=2)
    assert long.calls == 4 and seconds[1] >= 0.05  # one round when it is long
    tiny = FakeMethod([0.0] * 6)
    ids, _, _, _ = batch_seconds(tiny, H[:1], 2, {}, [1, 2], chunks=8)
    assert tiny.sizes == [1] * 6 and ids.shape == (1, 2)  # never more slices than queries


def test_recall_against_ignores_exact_padding():
    ids = np.array([[1, 2, 3], [4, -1, -1]])
    exact = np.array([[1, 2, 9], [4, 5, -1]])
    assert recall_against(ids, exact) == 3 / 5


def test_pareto_keeps_undominated_points_by_recall():
    points = [(0.9, 100.0), (0.95, 50.0), (0.8, 80.0), (1.0, 10.0), (0.95, 60.0)]
    assert pareto(points) == [0, 4, 3]


def test_cost_model_in_fixed_and_host_units():
    host = {"ns_per_posting": 2.0, "ns_per_item": 0.3}
    m = cost_model(entries=10_000, n_items=20_000, single_us=66.0, batch_us=44.0, host=host)
    assert m["cost_model_us"] == 10.0 + 12.0  # 10,000 x 1 ns + 20,000 x 0.6 ns
    assert m["host_model_us"] == 20.0 + 6.0
    assert m["batch_over_model"] == 2.0 and m["mean_over_model"] == 3.0 and m["batch_over_host_model"] == 44.0 / 26.0


def row(method, setting, recall, p50, q1, q2, **extra):
    return {"method": method, "setting": setting, "recall_vs_exact": recall, "p50_us": p50, "p99_us": 2 * p50,
            "mean_us": p50, "qps_1t": q1, "qps_2t": q2, "recall@20": 0.1, "ndcg@20": 0.05, "index_bytes": 1e6,
            **extra}


def test_summary_picks_the_fastest_setting_above_the_target_recall():
    rows = [row("sparseidx", "exact", 1.0, 1000.0, 1000, 2000),
            row("sparseidx", "prune=0.003", 0.993, 50.0, 20000, 39000),
            row("sparseidx", "prune=0.01", 0.80, 30.0, 40000, 80000),
            row("seismic", "qc=50", 0.991, 5000.0, 200, 200),
            row("seismic", "qc=20", 0.94, 4000.0, 250, 250),
            row("faiss", "ef=64", 0.45, 300.0, 8000, 13000)]
    s = summary(rows, [1, 2])
    assert s["best"]["sparseidx"]["setting"] == "prune=0.003"
    assert s["best"]["seismic"]["setting"] == "qc=50" and s["best"]["seismic"]["sparseidx_p50_speedup"] == 100.0
    assert s["best"]["faiss"] is None
    assert s["sparseidx_thread_scaling"] == {"threads": [1, 2], "min": 1.95, "max": 2.0}
    text = markdown(rows, {"summary": s, "queries": 6, "latency_queries": 6, "n_items": 10}, 20, [1, 2])
    assert ("seismic: fastest at recall >= 0.99: qc=50 (recall 0.9910), p50 5,000 us; "
            "sparseidx's p50 is 100.0x lower") in text
    assert "faiss: no setting reaches recall 0.99" in text
    assert "| sparseidx | prune=0.003 | 0.9930 | 50 | 100 | 20,000 | 20,000 | 39,000 | 1.95 |" in text


def test_host_costs_are_the_median_time_per_posting_and_per_item(monkeypatch):
    from types import SimpleNamespace

    from sparseidx.bench import calibrate

    host_costs(16, postings=64, repeat=1)  # compiled before the clock is scripted
    # a scripted clock: three repeats, each (start, after the scatter-add, after the top-10 pass), in seconds
    ticks = iter([0.0, 2e-3, 2.5e-3, 10.0, 10.006, 10.0065, 20.0, 20.004, 20.0052])
    monkeypatch.setattr(calibrate, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    costs = host_costs(1000, postings=4000, repeat=3)
    # medians of (2, 6, 4) ms over 4000 postings and of (0.5, 0.5, 1.2) ms over 2^16 scores (longer than 1000 items)
    assert costs["ns_per_posting"] == pytest.approx(4e-3 / 4000 * 1e9)
    assert costs["ns_per_item"] == pytest.approx(0.5e-3 / (1 << 16) * 1e9)


def test_the_timed_loops_compute_what_they_model():
    from sparseidx.bench.calibrate import _scatter_add

    rng = np.random.default_rng(2)
    items = rng.integers(0, 50, 2000).astype(np.uint32)
    weights = rng.standard_normal(2000).astype(np.float32)
    acc = np.zeros(50, dtype=np.float32)
    _scatter_add(items, weights, acc)
    expected = np.zeros(50, dtype=np.float64)
    np.add.at(expected, items, weights)
    assert np.allclose(acc, expected, atol=1e-4)
    scores = np.random.default_rng(1).standard_normal(500).astype(np.float32)
    best = np.empty(10, dtype=np.float32)
    _top10(scores, best)
    assert np.array_equal(best, np.sort(scores)[::-1][:10])


def test_write_report_replaces_files_whole_or_leaves_the_old_ones(tmp_path):
    rows = [row("sparseidx", "exact", 1.0, 1000.0, 1000, 2000), row("seismic", "qc=50", 0.991, 5000.0, 200, 200)]
    meta = {"queries": 6, "latency_queries": 6, "n_items": 10}
    write_report(rows, str(tmp_path), meta, 20, [1, 2])
    first = json.loads((tmp_path / "report.json").read_text())
    assert [r["setting"] for r in first["rows"]] == ["exact", "qc=50"]
    assert "| seismic | qc=50 |" in (tmp_path / "report.md").read_text()
    # a row that cannot be written: the previous report stays as it was and no temporary file is left behind
    broken = rows + [row("faiss", "ef=64", 0.45, 300.0, 8000, 13000, extra=object())]
    with pytest.raises(TypeError):
        write_report(broken, str(tmp_path), meta, 20, [1, 2])
    assert json.loads((tmp_path / "report.json").read_text()) == first
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
