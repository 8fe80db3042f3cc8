"""A recall target instead of a threshold: the fastest setting whose recall@k reaches it on sample histories.

Like FAISS's auto-tuning, the knobs are tried from the fastest setting to the most
accurate one (exact search where the backend has it) on a sample of histories, against
the answers of that most accurate setting, and the first whose recall@k reaches the
target is kept. Recall@k here is the share of the exact
top-k items found, averaged over the sample's histories.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from ..progress import log

SAMPLE = 2000  # histories the calibration answers (exactly and at each setting)
MIN_SAMPLE = 100  # fewer histories say too little about recall


def calibrate(index, histories, target_recall: float, k: int = 20, sample: int = SAMPLE, seed: int = 0,
              threads: int | None = None) -> dict:
    """The operating point of ``index`` for ``target_recall``: the chosen knobs and the recall measured.

    ``histories``: a users x items matrix or lists of item ids (non-empty ones are
    sampled). Returns {"target_recall", "k", "knobs", "recall", "queries"}.
    """
    if not 0.0 < target_recall <= 1.0:
        raise DataError(f"target_recall must be in (0, 1], got {target_recall}")
    H = sp.csr_matrix(index.histories_matrix(histories))
    H = H[np.diff(H.indptr) > 0]
    if H.shape[0] < MIN_SAMPLE:
        raise DataError(f"a recall target needs at least {MIN_SAMPLE} non-empty histories to calibrate on, got "
                        f"{H.shape[0]}; give a larger batch, or build the index with --target-recall")
    if H.shape[0] > sample:
        H = H[np.sort(np.random.default_rng(seed).choice(H.shape[0], sample, replace=False))]
    grid = index.tuning_grid(k)
    exact = index.search(H, k, index.Options(threads=threads, **grid[-1]))[1]
    found = exact >= 0
    for knobs in grid[:-1]:
        ids = index.search(H, k, index.Options(threads=threads, **knobs))[1]
        recall = _recall(ids, exact, found)
        log.debug("calibration: %s -> recall@%d %.4f", knobs, k, recall)
        if recall >= target_recall:
            return _point(target_recall, k, knobs, recall, H.shape[0])
    return _point(target_recall, k, grid[-1], 1.0, H.shape[0])  # the reference itself


def _point(target: float, k: int, knobs: dict, recall: float, queries: int) -> dict:
    log.info("recall target %.4g at k=%d: %s (recall %.4f on %d histories)", target, k, knobs or "exact search",
             recall, queries)
    return {"target_recall": float(target), "k": int(k), "knobs": dict(knobs), "recall": float(recall),
            "queries": int(queries)}


def _recall(ids: np.ndarray, exact: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row's exact items (``found`` marks them) that ``ids`` holds."""
    n, k = exact.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    span = int(max(exact.max(initial=0), ids.max(initial=0))) + 1
    want = (rows * span + exact.ravel())[found.ravel()]
    got = (rows * span + ids.ravel())[(ids >= 0).ravel()]
    hits = np.bincount((want[np.isin(want, got)] // span).astype(np.int64), minlength=n)
    return float(np.mean(hits / np.maximum(found.sum(axis=1), 1)))
