"""The search contract every backend implements: ``search(histories, k, options, exclude=, allow=)``."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, IndexFormatError
from . import filters as flt
from . import format as fmt
from . import kernels
from .deny import load_denied
from .histories import HistoryEncoder, check_k
from .options import SearchOptions


@dataclass
class SearchResult:
    """Answers to a batch of queries, with per-query statistics.

    ``ids`` are internal item indices (-1 where fewer than k items remain);
    ``popular`` flags rows answered by popularity because the history was empty;
    ``postings`` counts posting entries scanned; ``nonzero`` counts items with a
    non-zero score (prediction coverage); ``entries`` counts every sparse entry
    read (encoder rows, postings and rescored item rows: the P of the cost model).
    """

    scores: np.ndarray
    ids: np.ndarray
    popular: np.ndarray
    postings: np.ndarray
    nonzero: np.ndarray
    entries: np.ndarray | None = None


class SearchIndex(HistoryEncoder):
    """What every index offers: search with options and filters, ``write``, ``open``, ``info``.

    A backend sets ``backend``, ``kind`` and ``Options`` and implements ``_search``, ``write``
    and ``_read``; it holds ``priors``, ``item_ids``, ``popularity``, ``manifest`` and
    ``denied`` (a uint8 mask of the items its deny list removes, or None).
    """

    backend = ""
    kind = ""  # how messages name the backend: "sparse", "FAISS"
    Options = SearchOptions
    denied: np.ndarray | None = None
    _one_unfiltered: kernels.Filters | None = None

    @property
    def n_items(self) -> int:
        return len(self.priors)

    def search(self, histories, k: int = 20, options=None, *, exclude=None, allow=None,
               **knobs) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for each history: (scores float32 (n, k), ids int64 (n, k)), k capped at the items.

        ``histories``: a users x items sparse matrix or a list of lists of item ids.
        ``options``: this backend's ``Options`` or a mapping of its knob names;
        ``knobs``: the same as keywords. ``exclude``: items never returned; ``allow``:
        the only items that may be returned; each a flat list of item ids for every
        query or one list per query (unknown ids are ignored). Ids are internal
        indices, -1 (score -inf) where fewer than k items remain; map them with
        ``item_ids``.
        """
        res = self.search_detailed(histories, k, options, exclude=exclude, allow=allow, **knobs)
        return res.scores, res.ids

    def search_detailed(self, histories, k: int = 20, options=None, *, exclude=None, allow=None,
                        **knobs) -> SearchResult:
        """Like ``search`` but also returns popularity flags, postings scanned and coverage."""
        k = check_k(k, self.n_items)
        opts = self.resolve(self.options(options, **knobs), k, histories)
        return self._search(histories, k, opts, exclude, allow)

    def options(self, options=None, **knobs) -> SearchOptions:
        """The options a search with these arguments runs with: an options object as given; else the
        mapping's and the keywords' knobs over the index's operating point (exact search unless it was built
        for a recall target), which applies only when none of the backend's own knobs nor a target is set."""
        if isinstance(options, SearchOptions):
            return self.Options.parse(options, **knobs)
        given = self.Options.parse(options, **knobs)
        if given.knobs() or given.target_recall is not None or not self.manifest.get("operating_point"):
            return given
        return self.Options.parse(self.default_options, **given.changed())

    @property
    def default_options(self) -> SearchOptions:
        """The index's operating point: the knobs its build chose for a recall target, else exact search."""
        point = self.manifest.get("operating_point")
        return self.Options(**point["knobs"]) if point else self.Options()

    def resolve(self, options: SearchOptions, k: int, histories) -> SearchOptions:
        """``options`` with a recall target replaced by the knobs that reach it (calibrated once per target)."""
        target = options.target_recall
        if target is None:
            return options
        point = self.manifest.get("operating_point") or {}
        key = (target, k)
        if (point.get("target_recall"), point.get("k")) == key:
            knobs = point["knobs"]
        else:
            cache = self.__dict__.setdefault("_calibrated", {})
            if key not in cache:
                from .calibrate import calibrate

                cache[key] = calibrate(self, histories, target, k, threads=options.threads)["knobs"]
            knobs = cache[key]
        return replace(options, target_recall=None, **knobs)

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True, files: fmt.IndexFiles | None = None):
        """Open an index directory of this backend (memory-mapped); with ``verify`` the checksums are checked
        first."""
        if files is None:
            with fmt.open_files(path) as files:
                return cls.open(path, verify, files)
        backend = files.manifest["backend"]
        if backend != cls.backend:
            raise IndexFormatError(f"{files.path}: a {backend!r} index, not a {cls.kind} one")
        files.ensure_intact(checksums=verify)
        index = cls._read(files)
        index.denied = load_denied(files, files.manifest["n_items"])
        index._check_operating_point(files.path)
        files.remember_checked()
        return index

    @classmethod
    def _read(cls, files: fmt.IndexFiles) -> "SearchIndex":  # pragma: no cover
        """The index held by intact ``files``, its arrays checked against the manifest."""
        raise NotImplementedError

    def _check_operating_point(self, path: str) -> None:
        """Refuse, as a damaged index, a manifest whose operating point the backend's options refuse."""
        try:
            self.default_options
        except (DataError, TypeError) as exc:
            raise IndexFormatError(f"{path}/manifest.json: operating_point: {exc}") from None

    def tuning_grid(self, k: int) -> list[dict]:  # pragma: no cover
        """Settings of the backend's knobs from the fastest to the most accurate (the last: the reference a
        calibration measures recall against; ``{}`` is exact search), for calibration."""
        raise NotImplementedError

    def search_vectors(self, vectors, k: int = 20, options=None, *, exclude=None, allow=None,
                       **knobs) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for ready user vectors u (rows of a queries x dims matrix, sparse or dense):
        score = prior_i * <u, V_i>. Like ``search``, with no history to exclude; a zero
        vector gets the most popular items."""
        res = self.search_vectors_detailed(vectors, k, options, exclude=exclude, allow=allow, **knobs)
        return res.scores, res.ids

    def search_vectors_detailed(self, vectors, k: int = 20, options=None, *, exclude=None, allow=None,
                                **knobs) -> SearchResult:
        """Like ``search_vectors`` but also returns popularity flags, postings scanned and coverage."""
        opts = self.Options.parse(options, **knobs)
        k = check_k(k, self.n_items)
        return self._search_vectors(_user_vectors(vectors, self.n_dims), k, opts, exclude, allow)

    def _search(self, histories, k: int, options, exclude, allow) -> SearchResult:  # pragma: no cover
        raise NotImplementedError

    def _search_vectors(self, U: sp.csr_matrix, k: int, options, exclude, allow) -> SearchResult:  # pragma: no cover
        raise NotImplementedError

    def _filters(self, n_queries: int, exclude, allow) -> kernels.Filters:
        if exclude is None and allow is None:
            if n_queries != 1:
                return flt.unfiltered(n_queries, self.denied)
            if self._one_unfiltered is None:  # the single query's usual case, made once
                self._one_unfiltered = flt.unfiltered(1, self.denied)
            return self._one_unfiltered
        return flt.query_filters(self, n_queries, exclude, allow, self.denied)

    def item_embedding(self, row: int):  # pragma: no cover
        """Item ``row``'s embedding (sparse: dims and weights; dense: the vector), or None if unavailable."""
        raise NotImplementedError

    def info(self) -> dict:
        """What the index is: backend, model, counts, build id, generation, deny list and files."""
        m = self.manifest
        return {"backend": self.backend, "model": m.get("model"), "n_items": self.n_items, "n_dims": self.n_dims,
                "build_id": m.get("build_id"), "generation": m.get("generation", m.get("build_id")),
                "denied_items": int(m.get("deny", {}).get("items", 0)),
                "operating_point": m.get("operating_point"),
                "options": list(self.Options.names()), "params": dict(m.get("params", {})),
                **{key: m[key] for key in ("faiss_index", "static_pruning", "nnz_postings") if key in m}}

    def _fill_popular(self, rows: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int,
                      filters: kernels.Filters) -> None:
        """Answer the empty histories ``rows`` by the most popular items each may return."""
        if self.popularity is None:
            raise DataError("an empty history was given, but this index has no popularity counts "
                            "(built from imported embeddings without interactions); give a non-empty history")
        popularity = np.asarray(self.popularity)
        ranked = np.lexsort((np.arange(self.n_items), -popularity)).astype(np.int64)
        kernels.popular_answers(rows.astype(np.int64), ranked, popularity.astype(np.float32), filters,
                                np.zeros(self.n_items, dtype=np.uint8), k, scores, ids)


def _user_vectors(vectors, n_dims: int) -> sp.csr_matrix:
    """User vectors as a finite float32 CSR matrix of ``n_dims`` columns (one row per query)."""
    try:
        U = sp.csr_matrix(vectors if sp.issparse(vectors) else np.atleast_2d(np.asarray(vectors, dtype=np.float32)),
                          dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"user vectors must be a queries x {n_dims} matrix of numbers") from None
    if U.ndim != 2 or U.shape[1] != n_dims:
        raise DataError(f"user vectors have {U.shape[-1]} dimensions but the index has {n_dims}")
    if not np.isfinite(U.data).all():
        raise DataError("user vectors hold NaN or infinite values")
    U.eliminate_zeros()
    return U
