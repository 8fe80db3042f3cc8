"""X^T X and the item counts of an interactions dataset larger than memory, summed over its partitions.

Two passes over the partitions (see ``partitions``), both on the workers: the item ids
of each partition, united by a tree reduction into the id space every partition then
maps onto (sorted, as a single-machine read orders them), and a key per user
(``user_keys``) that the caller checks: a user in two partitions is refused, as X^T X
sums per user; then each partition's X_p^T X_p (float64) and users per item, summed by
a tree reduction. Only the result, items x items sparse, comes back to the caller:
``Cholesky(...).fit_gram`` trains on it.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data import load_interactions, popularity, show_token
from ..errors import DataError
from ..progress import counter, log, stage
from ..user_keys import keys, split_user
from .cluster import connect, outcome
from .partitions import list_partitions

SPLIT_EVERY = 4  # partial results summed per reduction task


@dataclass
class GramResult:
    """X^T X (items x items float32 CSR), users per item, the item ids, and the dataset's size."""

    G: sp.csr_matrix
    counts: np.ndarray
    item_ids: np.ndarray
    n_users: int
    nnz: int


def gram(interactions, scheduler="local:2", split_every: int = SPLIT_EVERY) -> GramResult:
    """The Gram matrix and item counts of the dataset ``interactions`` (a file or a directory), on Dask.

    ``scheduler``: ``local:N``, ``tcp://HOST:PORT`` or a ``distributed.Client``. A user's
    interactions must lie in one file of the dataset (X^T X sums per user).
    """
    if not isinstance(split_every, int) or split_every < 2:
        raise DataError(f"split_every must be an integer >= 2, got {split_every!r}")
    parts = list_partitions(interactions)
    with connect(scheduler) as client:
        with stage(f"item and user ids of {len(parts):,} partition(s)"):
            ids = client.map(_ids, parts, pure=False)
            user_keys = client.map(operator.itemgetter(1), ids, pure=False)
            items = _reduce(client, parts, client.map(operator.itemgetter(0), ids, pure=False), _union,
                            split_every)
            del ids
            _check_apart(parts, client.gather(user_keys))
        log.info("%s items", f"{len(items):,}")
        shared = client.scatter(items, broadcast=True)
        with stage(f"Gram matrix of {len(parts):,} partition(s) on {len(client.nthreads())} worker(s)"):
            G, counts, users, nnz = _reduce(client, parts, [client.submit(_partial, part, shared, pure=False)
                                                            for part in parts], _add, split_every)
    return GramResult(G=sp.csr_matrix(G, dtype=np.float32), counts=counts, item_ids=items, n_users=users, nnz=nnz)


def _reduce(client, parts, futures, combine, split_every):
    """Tree-reduce the partitions' results with ``combine`` on the workers; progress as partitions finish."""
    level = list(futures)
    while len(level) > 1:
        level = [client.submit(combine, *level[i:i + split_every], pure=False)
                 for i in range(0, len(level), split_every)]
    root = level[0]
    keys = {f.key: part for f, part in zip(futures, parts)}
    from distributed import as_completed

    finished = as_completed(futures)
    del futures  # held only by the reduction from here: each partial is freed once summed
    with counter(len(parts), "partitions") as progress:
        for future in finished:
            if future.status == "error":
                outcome(future, keys[future.key])
            progress.update(1)
    return outcome(root, f"the reduction of {len(parts)} partition(s)")


def _ids(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Worker side: the distinct item ids of one partition, sorted, and the keys of its users."""
    inter = load_interactions(path)
    return inter.item_ids, keys(inter.user_ids)


def _check_apart(parts: list[str], part_keys: list[np.ndarray]) -> None:
    """Refuse a dataset in which a user has interactions in two partitions."""
    found = split_user(part_keys, lambda i: load_interactions(parts[i]).user_ids)
    if found:
        user, where = found
        raise DataError(f"user {show_token(user)} has interactions in partitions {parts[where[0]]} and "
                        f"{parts[where[1]]}: X^T X sums each user's items together, so put each user's interactions "
                        "in one partition")


def _union(*ids: np.ndarray) -> np.ndarray:
    kinds = {"int" if a.dtype.kind in "iu" else "str" for a in ids}
    if len(kinds) > 1:
        raise DataError("the partitions disagree on the type of item ids: some hold integers, others strings; "
                        "write every item id the same way")
    return functools.reduce(np.union1d, ids)


def _partial(path: str, items: np.ndarray):
    """Worker side: (X_p^T X_p in float64, users per item, users, interactions) of one partition."""
    X = load_interactions(path, item_ids=items).X
    X64 = sp.csr_matrix(X, dtype=np.float64)
    return (X64.T @ X64).tocsr(), popularity(X), X.shape[0], X.nnz


def _add(*parts):
    """The sum of partial results (Gram matrices, counts, users, interactions)."""
    return tuple(functools.reduce(operator.add, field) for field in zip(*parts))
