"""The benchmark harness's own arithmetic: recall against the exact answer, Pareto fronts, repeated runs."""

import numpy as np
import scipy.sparse as sp

from sparseidx.bench.harness import batch_seconds, pareto, recall_against


class FakeMethod:
    """Answers every batch after a scripted wait (seconds), counting the calls."""

    def __init__(self, waits):
        self.waits = list(waits)
        self.calls = 0

    def batch(self, H, k, setting, threads):
        import time

        time.sleep(self.waits[self.calls])
        self.calls += 1
        return np.zeros((H.shape[0], k), dtype=np.int64), 1.0, 2.0


def test_batch_seconds_is_the_median_of_short_runs_and_a_single_long_run():
    H = sp.csr_matrix(np.ones((4, 3)))
    short = FakeMethod([0.3, 0.0, 0.1])  # the median is the 0.1 s run (waits far apart: robust to a busy host)
    _, postings, entries, seconds = batch_seconds(short, H, 2, {}, 1, long_run=1.0)
    assert short.calls == 3 and 0.1 <= seconds < 0.3 and (postings, entries) == (1.0, 2.0)
    long = FakeMethod([0.05, 0.0, 0.0])
    _, _, _, seconds = batch_seconds(long, H, 2, {}, 1, long_run=0.04)
    assert long.calls == 1 and seconds >= 0.05


def test_recall_against_ignores_exact_padding():
    ids = np.array([[1, 2, 3], [4, -1, -1]])
    exact = np.array([[1, 2, 9], [4, 5, -1]])
    assert recall_against(ids, exact) == 3 / 5


def test_pareto_keeps_undominated_points_by_recall():
    points = [(0.9, 100.0), (0.95, 50.0), (0.8, 80.0), (1.0, 10.0), (0.95, 60.0)]
    assert pareto(points) == [0, 4, 3]
