"""Per-query item filters: ``exclude`` (never returned) and ``allow`` (only these), as the engines read them.

A filter is ``None``; a flat list of external item ids, applied to every query of the
batch; or one list of ids per query. Ids the index does not know are ignored: they can
never be returned anyway. An exclude list shared by a large batch, and a long shared
allow list, become one mask over the items (``blocked``); other lists stay lists (a
shared allow list one row read by every query), so a filtered query costs its
unfiltered time plus the length of its lists. The index's persistent deny list
(``sparseidx deny``) is always part of ``blocked``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import DataError
from .histories import item_id_array, sorted_unique
from .kernels import Filters

SHARED_ALLOW_SHIFT = 3  # an allow list shared by a batch becomes a mask above n_items / 8 items
_NO_ITEMS = np.empty(0, dtype=np.uint32)
_NOTHING_BLOCKED = np.empty(0, dtype=np.uint8)


def query_filters(index, n_queries: int, exclude=None, allow=None, denied: np.ndarray | None = None) -> Filters:
    """The ``Filters`` of a batch of ``n_queries`` over ``index`` (anything mapping ids with ``item_indices``).

    ``denied``: a uint8 mask of items no query may return (the index's deny list), or None.
    """
    n_items = index.n_items
    blocked = denied
    empty = (np.zeros(n_queries + 1, dtype=np.int64), _NO_ITEMS)
    ex_indptr, ex_items = empty
    al_indptr, al_items = empty
    per_query_allow = al_shared = False
    ex_rows, ex_shared = _rows(index, exclude, n_queries, "exclude")
    if ex_shared is not None and len(ex_shared) * n_queries >= n_items:  # one mask is cheaper than the lists
        blocked = _with(blocked, n_items, ex_shared, 1)
    elif ex_shared is not None:
        ex_indptr, ex_items = np.arange(n_queries + 1, dtype=np.int64) * len(ex_shared), np.tile(
            ex_shared.astype(np.uint32), n_queries)
    elif ex_rows is not None:
        ex_indptr, ex_items = ex_rows
    al_rows, al_shared_items = _rows(index, allow, n_queries, "allow")
    if al_shared_items is not None and len(al_shared_items) > n_items >> SHARED_ALLOW_SHIFT:
        keep = np.zeros(n_items, dtype=bool)  # a large list shared by all: the rest blocked, one mask
        keep[al_shared_items] = True
        blocked = _with(blocked, n_items, np.flatnonzero(~keep), 1)
    elif al_shared_items is not None:  # one row, read by every query
        al_indptr = np.array([0, len(al_shared_items)], dtype=np.int64)
        al_items = al_shared_items.astype(np.uint32)
        per_query_allow = al_shared = True
    elif al_rows is not None:
        al_indptr, al_items = al_rows
        per_query_allow = True
    return Filters(_NOTHING_BLOCKED if blocked is None else blocked, ex_indptr, ex_items, al_indptr, al_items,
                   per_query_allow, al_shared)


def _with(mask: np.ndarray | None, n_items: int, items: np.ndarray, value: int) -> np.ndarray:
    """A copy of ``mask`` (or a new zero mask) with ``items`` set to ``value``."""
    out = np.zeros(n_items, dtype=np.uint8) if mask is None else mask.copy()
    out[items] = value
    return out


def unfiltered(n_queries: int, denied: np.ndarray | None = None) -> Filters:
    """The ``Filters`` of a batch with no filters but the deny list."""
    empty = np.zeros(n_queries + 1, dtype=np.int64)
    return Filters(_NOTHING_BLOCKED if denied is None else denied, empty, _NO_ITEMS, empty, _NO_ITEMS, False, False)


def allowed_row(filters: Filters, r: int) -> np.ndarray:
    """The items query ``r`` may return by its allow list (the shared one, or its own), as int64 indices."""
    r = 0 if filters.al_shared else r
    return filters.al_items[filters.al_indptr[r]:filters.al_indptr[r + 1]].astype(np.int64)


def _rows(index, spec, n_queries: int, name: str):
    """(per-query CSR rows, None) or (None, shared item indices) or (None, None) for no filter."""
    if spec is None:
        return None, None
    if isinstance(spec, (str, bytes, Mapping)) or not isinstance(spec, Iterable):
        raise DataError(f"{name} must be a list of item ids (for every query) or one list per query, "
                        f"got {type(spec).__name__}")
    if isinstance(spec, np.ndarray) and spec.ndim == 1:
        return None, sorted_unique(_known(index, item_id_array(spec, name)))
    lists = list(spec)
    nested = [isinstance(x, Iterable) and not isinstance(x, (str, bytes)) for x in lists]
    if not any(nested):
        return None, sorted_unique(_known(index, item_id_array(lists, name)))
    if not all(nested):
        raise DataError(f"{name} mixes item ids and lists; give one flat list of ids for every query, or one "
                        "list per query")
    if len(lists) != n_queries:
        raise DataError(f"{name} has {len(lists)} lists but there are {n_queries} queries; give one list per "
                        "query, or one flat list for all")
    return _csr([_known(index, item_id_array(x, f"{name} of query {q + 1}")) for q, x in enumerate(lists)],
                index.n_items), None


def _known(index, ids: np.ndarray) -> np.ndarray:
    """Internal indices of the ids the index knows (others dropped)."""
    if not len(ids):
        return np.empty(0, dtype=np.int64)
    idx, found = index.item_indices(ids)
    return idx[found]


def _csr(rows: list[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query lists as CSR (indptr int64, items uint32), each row sorted and duplicate-free."""
    if len(rows) == 1:  # a single query
        items = sorted_unique(rows[0])
        return np.array([0, len(items)], dtype=np.int64), items.astype(np.uint32)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.concatenate(rows) if lengths.sum() else np.empty(0, dtype=np.int64)
    keys = sorted_unique(np.repeat(np.arange(len(rows), dtype=np.int64), lengths) * n_items + flat)
    indptr = np.searchsorted(keys, np.arange(len(rows) + 1, dtype=np.int64) * n_items).astype(np.int64)
    return indptr, (keys % max(n_items, 1)).astype(np.uint32)
