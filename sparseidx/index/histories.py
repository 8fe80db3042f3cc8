"""Turning user histories (external item ids or a sparse matrix) into query rows."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data import lookup_ids, show_id
from ..errors import DataError, UnknownItemError
from ..progress import log


class HistoryEncoder:
    """Shared by every index backend: maps histories onto the index's item id space."""

    def __init__(self, item_ids: np.ndarray):
        self.item_ids = item_ids

    @property
    def n_items(self) -> int:  # pragma: no cover - overridden by every backend
        raise NotImplementedError

    def histories_matrix(self, histories, skip_unknown: bool = False) -> sp.csr_matrix:
        """A queries x items CSR matrix from a sparse matrix or lists of external item ids.

        Unknown ids raise UnknownItemError naming them, or are dropped with a
        warning when ``skip_unknown`` is set.
        """
        if sp.issparse(histories):
            if histories.shape[1] != self.n_items:
                raise DataError(f"histories have {histories.shape[1]} item columns but the index has "
                                f"{self.n_items} items")
            if histories.format == "csr" and histories.dtype == np.float32 and histories.has_sorted_indices:
                return histories  # already in query form: no copy on the single-query path
            Q = sp.csr_matrix(histories, dtype=np.float32)
            Q.sort_indices()
            return Q
        if isinstance(histories, np.ndarray) and histories.ndim == 2 and histories.dtype.kind == "f":
            return self.histories_matrix(sp.csr_matrix(histories), skip_unknown)
        rows = [np.asarray(h).ravel() for h in histories]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        flat = np.concatenate(rows) if len(rows) and lengths.sum() else np.empty(0, dtype=np.int64)
        idx, found = lookup_ids(self.item_ids, flat) if len(flat) else (np.empty(0, np.int64), np.empty(0, bool))
        if not found.all():
            unknown = flat[~found]
            bare = self.item_ids.dtype.kind in "iu"  # integer ids read best without quotes
            shown = ", ".join(str(x) if bare else show_id(x) for x in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            query_of = np.repeat(np.arange(len(rows)), lengths)[~found]
            if not skip_unknown:
                raise UnknownItemError(f"unknown item id(s) {shown}{more} (query {int(query_of[0]) + 1}); "
                                       "use --skip-unknown to ignore them")
            log.warning("Warning: skipped %d unknown item id(s): %s%s", len(unknown), shown, more)
        row_of = np.repeat(np.arange(len(rows)), lengths)
        Q = sp.csr_matrix((np.ones(int(found.sum()), dtype=np.float32), (row_of[found], idx[found])),
                          shape=(len(rows), self.n_items))
        Q.sum_duplicates()
        Q.data[:] = 1.0
        Q.sort_indices()
        return Q

    def _fill_popular(self, mask: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int) -> None:
        """Answer rows with empty histories by the most popular items (score = interaction count)."""
        if self.popularity is None:
            raise DataError("an empty history was given, but this index has no popularity counts "
                            "(built from imported embeddings without interactions); give a non-empty history")
        order = np.lexsort((np.arange(self.n_items), -np.asarray(self.popularity)))[:k]
        top = np.full(k, -1, dtype=np.int64)
        top[: len(order)] = order
        vals = np.full(k, -np.inf, dtype=np.float32)
        vals[: len(order)] = np.asarray(self.popularity)[order]
        ids[mask] = top
        scores[mask] = vals
