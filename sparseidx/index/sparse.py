"""The sparse inverted index: posting lists of V per dimension, encoder rows of E, priors."""

from __future__ import annotations

import contextlib
import os
import threading

import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ..errors import DataError, IndexFormatError
from ..factors import Factors
from ..progress import stage
from . import format as fmt
from . import kernels
from .base import SearchIndex, SearchResult
from .histories import QueryRows
from .options import SparseSearchOptions

# pruning thresholds a recall target is calibrated over, the fastest first
PRUNE_GRID = (0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.002, 0.001, 5e-4, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6)



class SparseIndex(SearchIndex):
    """Sparse MIPS over item embeddings: score(x, i) = prior_i * <x E, V_i>.

    Build with ``SparseIndex.build(factors)``, save with ``write(path)``, load with
    ``SparseIndex.open(path)`` (memory-mapped), query with ``search(histories, k)``.
    """

    backend = "sparse"
    kind = "sparse"
    Options = SparseSearchOptions

    def __init__(self, v_indptr, v_items, v_weights, max_abs, e_indptr, e_dims, e_weights,
                 priors, item_ids, popularity, manifest, forward=None, tables=()):
        self.v_indptr, self.v_items, self.v_weights, self.max_abs = v_indptr, v_items, v_weights, max_abs
        self.e_indptr, self.e_dims, self.e_weights = e_indptr, e_dims, e_weights
        # item rows of V as indexed (for exact rescoring); None when they equal the encoder rows
        self.forward = forward
        self.priors = priors
        self.item_ids = item_ids
        self.popularity = popularity
        self.manifest = manifest
        self._tables = tables  # keeps the memory maps alive while the arrays are in use
        self._local = threading.local()  # per-thread query buffers, reused across single-thread calls
        self._entries = {}  # kernel -> its compiled entry point for this index's argument types
        self._last_settings = None  # (options, k, vectors, kernels.Settings) of the last query
        f_indptr, f_dims, f_weights = forward or (e_indptr, e_dims, e_weights)
        # what the kernels read, ids as unsigned views (no copy): see kernels' module docstring
        self._arrays = kernels.Arrays(e_indptr, _unsigned(e_dims), e_weights, v_indptr, _unsigned(v_items),
                                      v_weights, max_abs, priors, f_indptr, _unsigned(f_dims), f_weights)
        super().__init__(item_ids)

    @property
    def n_dims(self) -> int:
        return len(self.v_indptr) - 1

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, factors: Factors, postings_per_dim: int | None = None,
              min_weight: float | None = None) -> "SparseIndex":
        """Index the factors' item embeddings; optionally prune each posting list statically.

        ``postings_per_dim`` keeps the largest-|weight| postings of every dimension;
        ``min_weight`` drops postings with |weight| below a global threshold.
        """
        V = factors.embeddings.tocsc()
        V.sort_indices()
        v_indptr = V.indptr.astype(np.int64)
        v_items = V.indices.astype(np.int32)
        v_weights = V.data.astype(np.float32)
        kernels.impact_order(v_indptr, v_items, v_weights)
        pruning = {}
        if min_weight is not None:
            if min_weight < 0:
                raise DataError(f"min_weight must be non-negative, got {min_weight}")
            v_indptr, v_items, v_weights = _keep_prefix(v_indptr, v_items, v_weights,
                                                        _count_above(v_indptr, v_weights, min_weight))
            pruning["min_weight"] = float(min_weight)
        if postings_per_dim is not None:
            if postings_per_dim < 1:
                raise DataError(f"postings_per_dim must be at least 1, got {postings_per_dim}")
            lengths = np.minimum(np.diff(v_indptr), postings_per_dim)
            v_indptr, v_items, v_weights = _keep_prefix(v_indptr, v_items, v_weights, lengths)
            pruning["postings_per_dim"] = int(postings_per_dim)
        max_abs = _max_abs(v_indptr, v_weights)
        E = factors.encoder
        pop = factors.popularity
        F = sp.csc_matrix((v_weights, v_items, v_indptr), shape=(factors.n_items, factors.n_dims)).tocsr()
        F.sort_indices()
        same = (F.nnz == E.nnz and np.array_equal(F.indptr, E.indptr) and np.array_equal(F.indices, E.indices)
                and np.array_equal(F.data, E.data))
        forward = None if same else (F.indptr.astype(np.int64), F.indices.astype(np.int32),
                                     F.data.astype(np.float32))
        manifest = {
            "backend": cls.backend, "model": factors.model, "n_items": factors.n_items,
            "n_dims": factors.n_dims, "nnz_embeddings": int(factors.embeddings.nnz),
            "nnz_postings": int(v_indptr[-1]), "nnz_encoder": int(E.nnz),
            "posting_order": "impact", "static_pruning": pruning,
            "forward_index": "encoder" if same else "forward.arrow", "params": dict(factors.params),
        }
        return cls(v_indptr, v_items, v_weights, max_abs, E.indptr.astype(np.int64), E.indices.astype(np.int32),
                   E.data.astype(np.float32), factors.priors, factors.item_ids, pop, manifest, forward=forward)

    # ---- persistence ----------------------------------------------------------------------
    def write(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the index directory atomically (a whole new build replaces any previous one in one step)."""
        fmt.check_index_output(path, overwrite)
        lengths = np.diff(self.v_indptr)
        postings = pa.table({
            "items": fmt.list_array(self.v_indptr, self.v_items),
            "weights": fmt.list_array(self.v_indptr, self.v_weights),
            "max_abs": pa.array(self.max_abs), "length": pa.array(lengths.astype(np.int64)),
        })
        encoder = pa.table({"dims": fmt.list_array(self.e_indptr, self.e_dims),
                            "weights": fmt.list_array(self.e_indptr, self.e_weights)})
        items = {"item_id": pa.array(self.item_ids), "prior": pa.array(self.priors)}
        if self.popularity is not None:
            items["popularity"] = pa.array(np.asarray(self.popularity, dtype=np.int64))
        tables = {"postings.arrow": postings, "encoder.arrow": encoder, "items.arrow": pa.table(items)}
        if self.forward is not None:
            f_indptr, f_dims, f_weights = self.forward
            tables["forward.arrow"] = pa.table({"dims": fmt.list_array(f_indptr, f_dims),
                                                "weights": fmt.list_array(f_indptr, f_weights)})
        fmt.write_index_dir(os.fspath(path), tables, {}, self.manifest, overwrite=overwrite)

    @classmethod
    def _read(cls, files: fmt.IndexFiles) -> "SparseIndex":
        path, manifest = files.path, files.manifest
        postings, encoder, items = (files.table(n) for n in ("postings.arrow", "encoder.arrow", "items.arrow"))
        rows = files.table("forward.arrow") if "forward.arrow" in manifest["files"] else None
        n, d = manifest["n_items"], manifest["n_dims"]
        try:
            v_indptr, v_items, v_weights = fmt.list_pair(postings, "items", "weights", d, path)
            e_indptr, e_dims, e_weights = fmt.list_pair(encoder, "dims", "weights", n, path)
            max_abs = fmt.column(postings, "max_abs", np.float32, d, path)
            priors = fmt.column(items, "prior", np.float32, n, path)
            item_ids = fmt.id_column(items, n, path)
            popularity = (fmt.column(items, "popularity", np.int64, n, path)
                          if "popularity" in items.column_names else None)
            forward = None if rows is None else fmt.list_pair(rows, "dims", "weights", n, path)
        except KeyError as exc:
            raise IndexFormatError(f"{path}: index files do not have the expected columns: {exc}") from None
        files.check_ids("postings.arrow", v_items, n)
        files.check_ids("encoder.arrow", e_dims, d)
        weights = {"postings.arrow": v_weights, "encoder.arrow": e_weights, "items.arrow": priors}
        if forward is not None:
            files.check_ids("forward.arrow", forward[1], d)
            weights["forward.arrow"] = forward[2]
        files.check_finite(weights)
        tables = (postings, encoder, items) + (() if rows is None else (rows,))
        return cls(v_indptr, v_items, v_weights, max_abs, e_indptr, e_dims, e_weights, priors, item_ids,
                   popularity, manifest, forward=forward, tables=tables)

    def item_embedding(self, row: int) -> dict:
        """Item ``row``'s embedding as indexed (after static pruning): {"dims": [...], "weights": [...]}."""
        indptr, dims, weights = self.forward or (self.e_indptr, self.e_dims, self.e_weights)
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        return {"dims": dims[lo:hi].tolist(), "weights": weights[lo:hi].tolist()}

    def to_factors(self) -> Factors:
        """The encoder, item embeddings (as indexed, after static pruning) and priors."""
        # copies: scipy's conversions write into their inputs, and mapped arrays are read-only
        E = sp.csr_matrix((np.array(self.e_weights), np.array(self.e_dims), np.array(self.e_indptr)),
                          shape=(self.n_items, self.n_dims))
        V = sp.csc_matrix((np.array(self.v_weights), np.array(self.v_items), np.array(self.v_indptr)),
                          shape=(self.n_items, self.n_dims)).tocsr()
        return Factors(encoder=E, embeddings=V, priors=self.priors, item_ids=self.item_ids,
                       model=self.manifest.get("model", "imported"), params=dict(self.manifest.get("params", {})),
                       popularity=self.popularity)

    # ---- querying -------------------------------------------------------------------------
    def tuning_grid(self, k: int) -> list[dict]:
        """Pruning thresholds from the most aggressive down, then exact search."""
        return [{"prune": p} for p in PRUNE_GRID] + [{}]

    def _search(self, histories, k: int, options: SparseSearchOptions, exclude, allow) -> SearchResult:
        return self._answer(self.query_rows(histories, skip_unknown=options.skip_unknown), False, k, options,
                            exclude, allow)

    def _search_vectors(self, U: sp.csr_matrix, k: int, options: SparseSearchOptions, exclude, allow
                        ) -> SearchResult:
        U = sp.csr_matrix(U, dtype=np.float32)
        U.sum_duplicates()
        rows = QueryRows(U.indptr.astype(np.int64), U.indices.astype(np.int32), U.data)
        return self._answer(rows, True, k, options, exclude, allow)

    def _answer(self, rows: QueryRows, vectors: bool, k: int, options: SparseSearchOptions, exclude, allow
                ) -> SearchResult:
        n = rows.n
        queries = kernels.Queries(rows.indptr, _unsigned(rows.indices), rows.data)
        settings = self._settings(options, k, vectors)
        filters = self._filters(n, exclude, allow)
        out = kernels.Output(np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.int64),
                             np.empty((3, n), dtype=np.int64))
        threads = _threads(options.threads, n)
        args = (queries, self._arrays, settings, filters, out)
        if threads == 1:
            empty = self._call(kernels.search_range, (self._scratch(k, settings.candidates), 0, n, 1, *args))
        else:
            previous = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                empty = self._call(kernels.search_parallel, (threads, *args))
            finally:
                numba.set_num_threads(previous)
        popular = rows.empty() if empty else np.zeros(n, dtype=bool)
        if empty:
            self._fill_popular(np.flatnonzero(popular), out.scores, out.ids, k, filters)
        return SearchResult(out.scores, out.ids, popular, out.stats[0], out.stats[1], out.stats[2])

    def _settings(self, options: SparseSearchOptions, k: int, vectors: bool) -> kernels.Settings:
        """The kernels' settings for these options; the last ones are kept for a caller that reuses its options."""
        last = self._last_settings
        if last is not None and last[0] is options and last[1] == k and last[2] == vectors:
            return last[3]
        settings = kernels.Settings(k, options.query_dims or 0, float(options.query_mass or 0.0), options.budget or 0,
                                    np.float32(options.prune or 0.0), options.rescored(k, self.n_items),
                                    options.exclude_history and not vectors, vectors)
        self._last_settings = (options, k, vectors, settings)
        return settings

    def _call(self, kernel, args: tuple):
        """Run a search kernel; after the first call, through its compiled entry point for these argument types.

        Every argument but the query's own arrays is fixed for an index (and those are
        built here with fixed dtypes), so numba's per-call type resolution, which costs
        more than a pruned query's Python overhead, is done once.
        """
        entry = self._entries.get(kernel)
        if entry is not None:
            return entry(*args)
        with contextlib.nullcontext() if kernels.compiled(kernel) else stage(
                "compiling the query engine (once after an install; cached on disk)"):
            result = kernel(*args)
        compiled = kernel.overloads.get(tuple(kernel.typeof_pyval(a) for a in args))
        self._entries[kernel] = kernel if compiled is None else compiled.entry_point
        return result

    def _scratch(self, k: int, candidates: int):
        """This thread's query buffers for (k, candidates), kept until another pair is asked for."""
        local = self._local
        if getattr(local, "key", None) != (k, candidates):
            local.scratch = kernels.new_scratch(self.n_items, self.n_dims, k, candidates)
            local.key = (k, candidates)
        return local.scratch


def _unsigned(ids: np.ndarray) -> np.ndarray:
    """Non-negative int32 ids as a uint32 view."""
    return ids.view(np.uint32)


def _threads(threads: int | None, n_queries: int) -> int:
    available = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        threads = available
    return max(1, min(threads, available, n_queries))


def _count_above(indptr, weights, threshold):
    """Postings with |weight| >= threshold per list (a prefix, since lists are impact ordered)."""
    cum = np.zeros(len(weights) + 1, dtype=np.int64)
    np.cumsum(np.abs(weights) >= threshold, out=cum[1:])
    return cum[indptr[1:]] - cum[indptr[:-1]]


def _keep_prefix(indptr, items, weights, lengths):
    """Keep the first ``lengths[d]`` postings of every list."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = indptr[:-1]
    mask = np.zeros(len(items), dtype=bool)
    new_indptr = np.zeros(len(indptr), dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    pos = np.arange(new_indptr[-1]) - np.repeat(new_indptr[:-1], lengths) + np.repeat(starts, lengths)
    mask[pos] = True
    return new_indptr, items[mask], weights[mask]


def _max_abs(indptr, weights):
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.diff(indptr) > 0
    if nonempty.any():
        # lists are impact ordered: the first posting has the largest |weight|
        out[nonempty] = np.abs(weights[indptr[:-1][nonempty]])
    return out
