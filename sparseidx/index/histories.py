"""Turning user histories (external item ids or a sparse matrix) into query rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..data import IdLookup, show_id
from ..errors import DataError, UnknownItemError
from ..progress import log

HISTORIES_FORMS = "histories must be a sparse matrix or a list of item-id lists, e.g. [[10, 20], [30]]"


class QueryRows(NamedTuple):
    """Histories as CSR arrays over the index's items: what the engines read."""

    indptr: np.ndarray  # int64, one more than the number of queries
    indices: np.ndarray  # int32 item indices, sorted and unique within a row
    data: np.ndarray  # float32 weights

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    def empty(self) -> np.ndarray:
        """Rows with no items."""
        return self.indptr[1:] == self.indptr[:-1]


class HistoryEncoder:
    """Shared by every index backend: maps histories onto the index's item id space."""

    def __init__(self, item_ids: np.ndarray):
        self.item_ids = item_ids
        self._id_lookup = None  # built on the first history given as external ids

    @property
    def n_items(self) -> int:  # pragma: no cover - overridden by every backend
        raise NotImplementedError

    def histories_matrix(self, histories, skip_unknown: bool = False) -> sp.csr_matrix:
        """A queries x items CSR matrix from a sparse matrix or lists of external item ids.

        Unknown ids raise UnknownItemError naming them, or are dropped with a
        warning when ``skip_unknown`` is set.
        """
        if sp.issparse(histories):
            return self._sparse_rows(histories)
        rows = self.query_rows(histories, skip_unknown)
        return sp.csr_matrix((rows.data, rows.indices, rows.indptr), shape=(rows.n, self.n_items))

    def query_rows(self, histories, skip_unknown: bool = False) -> QueryRows:
        """``histories_matrix`` as bare CSR arrays (no scipy object on the single-query path)."""
        if sp.issparse(histories):
            Q = self._sparse_rows(histories)
            # contiguous arrays of these dtypes: the engines' compiled entry points take no others
            return QueryRows(np.ascontiguousarray(Q.indptr, np.int64), np.ascontiguousarray(Q.indices, np.int32),
                             np.ascontiguousarray(Q.data, np.float32))
        if isinstance(histories, np.ndarray) and histories.ndim == 2 and histories.dtype.kind == "f":
            return self.query_rows(sp.csr_matrix(histories), skip_unknown)
        rows = [_item_ids(h, q) for q, h in enumerate(_history_list(histories))]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        flat = np.concatenate(rows) if len(rows) and lengths.sum() else np.empty(0, dtype=np.int64)
        idx, found = self.item_indices(flat)
        row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        if not found.all():
            unknown = flat[~found]
            bare = self.item_ids.dtype.kind in "iu"  # integer ids read best without quotes
            shown = ", ".join(str(x) if bare else show_id(x) for x in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            if not skip_unknown:
                raise UnknownItemError(f"unknown item id(s) {shown}{more} (query {int(row_of[~found][0]) + 1}); "
                                       "use --skip-unknown to ignore them")
            log.warning("Warning: skipped %d unknown item id(s): %s%s", len(unknown), shown, more)
        # one (row, item) key per entry: sorted and deduplicated, a repeated item counts once
        keys = sorted_unique(row_of[found] * self.n_items + idx[found])
        indptr = np.searchsorted(keys, np.arange(len(rows) + 1, dtype=np.int64) * self.n_items)
        return QueryRows(indptr.astype(np.int64), (keys % max(self.n_items, 1)).astype(np.int32),
                         np.ones(len(keys), dtype=np.float32))

    def item_indices(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Internal indices of external item ids, and whether each was found (unknown ones: index 0)."""
        if not len(ids):
            return np.empty(0, np.int64), np.empty(0, bool)
        if self._id_lookup is None:
            self._id_lookup = IdLookup(self.item_ids)
        return self._id_lookup.lookup(ids)

    def _sparse_rows(self, histories) -> sp.csr_matrix:
        if histories.shape[1] != self.n_items:
            raise DataError(f"histories have {histories.shape[1]} item columns but the index has "
                            f"{self.n_items} items")
        if histories.format == "csr" and histories.dtype == np.float32 and histories.has_sorted_indices:
            Q = histories  # already in query form: no copy on the single-query path
        else:
            Q = sp.csr_matrix(histories, dtype=np.float32)
            Q.sort_indices()
        _finite_weights(Q)
        return Q


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (numpy's ``unique`` is many times slower on the short arrays of a query)."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def check_k(k, n_items: int) -> int:
    """The number of items to return: ``k`` capped at the catalogue size ``n_items``.

    Refuses a k that is not an integer (True / False included) or is below 1, and
    an index without items.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be a positive integer (the number of items to return), got {show_id(k)}")
    if k < 1:
        raise DataError(f"k must be a positive integer (the number of items to return), got {int(k)}")
    if n_items < 1:
        raise DataError("the index has no items to return; rebuild it from interactions that name items")
    return int(min(k, n_items))


def _history_list(histories):
    """``histories`` as an iterable of histories; refuses None, numbers, strings and dicts."""
    if (isinstance(histories, (str, bytes, Mapping)) or not isinstance(histories, Iterable)
            or (isinstance(histories, np.ndarray) and histories.ndim == 0)):
        raise DataError(f"{HISTORIES_FORMS}; got {type(histories).__name__}")
    return histories


def _item_ids(history, q: int) -> np.ndarray:
    """One history (query ``q``, 0-based) as a flat array of item ids; refuses dicts and float ids."""
    if isinstance(history, Mapping):
        raise DataError(f"query {q + 1}: a history is a list of item ids, not a {type(history).__name__}; "
                        "pass list(...) of its ids")
    return item_id_array(history, f"query {q + 1}", HISTORIES_FORMS)


def item_id_array(ids, where: str, forms: str = "give a flat list of item ids") -> np.ndarray:
    """A flat list of item ids as an array; refuses nesting, dicts and float ids, naming ``where``."""
    if isinstance(ids, Mapping):
        raise DataError(f"{where}: a list of item ids, not a {type(ids).__name__}; pass list(...) of its ids")
    try:
        arr = np.asarray(ids)
    except ValueError:
        raise DataError(f"{where}: not a flat list of item ids; {forms}") from None
    if arr.ndim > 1:
        raise DataError(f"{where}: not a flat list of item ids; {forms}")
    arr = arr.ravel()
    if not arr.size:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iuUSO":
        raise DataError(f"{where}: item id {show_id(arr[0])} is a {arr.dtype.name} value; "
                        "item ids are integers or strings")
    return arr


def _finite_weights(Q: sp.csr_matrix) -> None:
    """Refuse NaN or infinite weights in a histories matrix, naming the first query holding one."""
    if np.isfinite(Q.data).all():
        return
    at = int(np.flatnonzero(~np.isfinite(Q.data))[0])
    query = int(np.searchsorted(Q.indptr, at, side="right"))
    raise DataError(f"query {query}: history weight {float(Q.data[at])} is not finite; "
                    "weights must be finite numbers")
