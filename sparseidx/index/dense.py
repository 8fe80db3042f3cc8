"""The FAISS-backed index for dense low-rank embeddings, with the sparse index's search contract.

Priors are folded into the stored vectors (V_i' = prior_i V_i), so FAISS's inner
product is the score; a query is u = x E. History and excluded items are masked by
fetching k + |history| + |exclude| neighbours and dropping them; allow lists and the
deny list become a FAISS ``IDSelector`` (one bitmap for the batch, or a query's own
allow list), so answers follow the same rules as the sparse engine: those items never
returned, -1 / -inf padding when fewer than k items remain, popular items for an empty
history. Under a selector HNSW walks its graph as usual and may find fewer than k
allowed items when they are rare; Flat and IVF indexes do not.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ..errors import DataError, IndexFormatError, OutputError, require
from ..factors import DenseFactors
from ..openblas import import_pinned
from . import filters as flt
from . import format as fmt
from .base import SearchIndex, SearchResult
from .options import FaissSearchOptions

FAISS_FILE = "vectors.faiss"
FETCH_ENTRIES = 1 << 24  # neighbours fetched per FAISS call at most (bounds the result buffers)


def _faiss():
    # faiss-cpu's bundled OpenBLAS may not know this CPU: see sparseidx/openblas.py
    return import_pinned("faiss", lambda name: require(name, "all", "the FAISS backend"))


class DenseIndex(SearchIndex):
    """Inner-product search over dense item embeddings with FAISS: score = prior_i * <x E, V_i>.

    Build with ``DenseIndex.build(factors, faiss_index="HNSW32,Flat")``, save with
    ``write(path)``, load with ``DenseIndex.open(path)``, query with ``search``.
    """

    backend = "faiss"
    kind = "FAISS"
    Options = FaissSearchOptions

    def __init__(self, index, encoder: np.ndarray, priors: np.ndarray, item_ids: np.ndarray,
                 popularity: np.ndarray | None, manifest: dict):
        self.index = index
        self.encoder = encoder
        self.priors = priors
        self.popularity = popularity
        self.manifest = manifest
        super().__init__(item_ids)

    @property
    def n_dims(self) -> int:
        return self.encoder.shape[1]

    @property
    def spec(self) -> str:
        return str(self.manifest.get("faiss_index", ""))

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, factors: DenseFactors, faiss_index: str = "Flat", seed: int = 0) -> "DenseIndex":
        """Index the factors' item embeddings with a FAISS factory string (inner product).

        ``Flat`` is exact; ``HNSW32,Flat``, ``IVF1024,Flat``, ``IVF256,PQ16`` trade recall
        for speed (IVF and PQ are trained on the item vectors themselves).
        """
        if not isinstance(factors, DenseFactors):
            raise DataError(f"model {factors.model!r} gives sparse embeddings: use the sparse backend "
                            "(--backend sparse)")
        stored = np.ascontiguousarray(factors.embeddings * factors.priors[:, None], dtype=np.float32)
        index = check_factory(faiss_index, factors.n_dims)
        if not index.is_trained:
            ivf = _ivf(index)
            if ivf is not None and ivf.nlist > factors.n_items:
                raise DataError(f"{faiss_index!r} asks for {ivf.nlist} IVF lists but there are only "
                                f"{factors.n_items} items; use fewer lists (about sqrt(items))")
            if ivf is not None:
                ivf.cp.seed = seed  # k-means of the coarse quantizer
            try:
                index.train(stored)
            except RuntimeError as exc:
                raise DataError(f"FAISS could not train {faiss_index!r}: {_faiss_message(exc)}") from None
        index.add(stored)
        manifest = {"backend": cls.backend, "model": factors.model, "n_items": factors.n_items,
                    "n_dims": factors.n_dims, "faiss_index": faiss_index, "metric": "inner_product",
                    "params": dict(factors.params)}
        return cls(index, factors.encoder, factors.priors, factors.item_ids, factors.popularity, manifest)

    # ---- persistence ----------------------------------------------------------------------
    def write(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the index directory atomically: FAISS file, encoder and items, manifest with checksums."""
        fmt.check_index_output(path, overwrite)
        n, d = self.encoder.shape
        encoder = pa.table({"values": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(self.encoder).ravel()), d)})
        items = {"item_id": pa.array(self.item_ids), "prior": pa.array(self.priors)}
        if self.popularity is not None:
            items["popularity"] = pa.array(np.asarray(self.popularity, dtype=np.int64))
        fmt.write_index_dir(os.fspath(path), {"encoder.arrow": encoder, "items.arrow": pa.table(items)},
                            {FAISS_FILE: self._write_faiss}, self.manifest, overwrite=overwrite)

    def _write_faiss(self, out: str) -> None:
        try:
            _faiss().write_index(self.index, out)
        except RuntimeError as exc:  # FAISS reports a failed write (a full disk, say) as a C++ exception
            raise OutputError(f"could not write {out}: {_faiss_message(exc)}") from None

    @classmethod
    def _read(cls, files: fmt.IndexFiles) -> "DenseIndex":
        path, manifest = files.path, files.manifest
        index = _read_faiss(_faiss(), files, f"{path}/{FAISS_FILE}")
        encoder_t = files.table("encoder.arrow")
        items = files.table("items.arrow")
        n, d = manifest["n_items"], manifest["n_dims"]
        try:
            values = encoder_t["values"].combine_chunks()
            if not pa.types.is_fixed_size_list(values.type) or values.type.list_size != d or values.null_count:
                raise IndexFormatError(f"{path}/encoder.arrow: not {d}-wide float32 rows")
            flat = values.flatten().to_numpy()
            priors = fmt.column(items, "prior", np.float32, n, path)
            item_ids = fmt.id_column(items, n, path)
            popularity = (fmt.column(items, "popularity", np.int64, n, path)
                          if "popularity" in items.column_names else None)
        except (KeyError, pa.ArrowInvalid) as exc:
            raise IndexFormatError(f"{path}: index files do not have the expected columns: {exc}") from None
        if flat.dtype != np.float32 or flat.size != n * d or index.ntotal != n or index.d != d:
            raise IndexFormatError(f"{path}: index files disagree with the manifest's counts ({n} items, {d} dims)")
        files.check_finite({"encoder.arrow": flat, "items.arrow": priors})
        return cls(index, flat.reshape(n, d), priors, item_ids, popularity, manifest)

    def item_embedding(self, row: int) -> list | None:
        """Item ``row``'s dense embedding V_i (the stored prior_i V_i divided by its prior), or None where the
        FAISS index type cannot reconstruct vectors (IVF without a direct map, PQ) or the prior is 0."""
        prior = float(self.priors[row])
        try:
            stored = self.index.reconstruct(int(row))
        except RuntimeError:
            return None
        return (np.asarray(stored, dtype=np.float64) / prior).tolist() if prior else None

    # ---- querying -------------------------------------------------------------------------
    def tuning_grid(self, k: int) -> list[dict]:
        """efSearch (HNSW) or nprobe (IVF) from the smallest up to the most accurate (all IVF lists)."""
        if "HNSW" in self.spec:
            return [{"ef_search": e} for e in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if e >= k]
        ivf = _ivf(self.index)
        if ivf is not None:
            probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if p < ivf.nlist]
            return [{"nprobe": p} for p in probes] + [{"nprobe": int(ivf.nlist)}]
        return [{}]

    def _search(self, histories, k: int, options: FaissSearchOptions, exclude, allow) -> SearchResult:
        Q = self.histories_matrix(histories, skip_unknown=options.skip_unknown)
        U = np.ascontiguousarray(Q @ self.encoder, dtype=np.float32) if Q.shape[0] else np.zeros(
            (0, self.n_dims), np.float32)
        return self._answer(U, np.diff(Q.indptr) == 0, Q if options.exclude_history else None, k, options,
                            exclude, allow)

    def _search_vectors(self, U: sp.csr_matrix, k: int, options: FaissSearchOptions, exclude, allow
                        ) -> SearchResult:
        return self._answer(np.ascontiguousarray(U.toarray(), dtype=np.float32), np.diff(U.indptr) == 0, None, k,
                            options, exclude, allow)

    def _answer(self, U: np.ndarray, popular: np.ndarray, history: sp.csr_matrix | None, k: int,
                options: FaissSearchOptions, exclude, allow) -> SearchResult:
        """Answers for user vectors U; ``popular`` rows (empty histories) get the most popular items."""
        faiss = _faiss()
        self._check_knobs(options)
        n = U.shape[0]
        filters = self._filters(n, exclude, allow)
        drop = _dropped(history, filters, n, self.n_items)
        scores = np.empty((n, k), dtype=np.float32)
        ids = np.empty((n, k), dtype=np.int64)
        previous = faiss.omp_get_max_threads()
        if options.threads is not None:
            faiss.omp_set_num_threads(options.threads)
        try:
            if filters.per_query_allow and not filters.al_shared:  # a selector of its own per query
                for r in range(n):
                    selector = faiss.IDSelectorBatch(_unblocked(flt.allowed_row(filters, r), filters.blocked))
                    scores[r], ids[r] = self._fetch(U[r:r + 1], drop[r], k, options, selector)
            elif filters.per_query_allow:  # one allow list for the batch
                selector = faiss.IDSelectorBatch(_unblocked(flt.allowed_row(filters, 0), filters.blocked))
                self._fetch_grouped(U, drop, k, options, selector, scores, ids)
            else:
                selector, _bitmap = _bitmap_selector(faiss, filters.blocked)
                self._fetch_grouped(U, drop, k, options, selector, scores, ids)
        finally:
            faiss.omp_set_num_threads(previous)
        if popular.any():
            self._fill_popular(np.flatnonzero(popular), scores, ids, k, filters)
        scored = self.n_items - (np.diff(history.indptr) if history is not None else 0)
        return SearchResult(scores, ids, popular, np.zeros(n, dtype=np.int64), np.broadcast_to(
            np.asarray(scored, dtype=np.int64), (n,)).copy())

    def _fetch_grouped(self, U, drop, k, options, selector, scores, ids) -> None:
        """Answer all queries, grouped by how many items each drops (powers of two), so that over-fetching
        k + |dropped| neighbours costs memory in proportion to each group's own lists."""
        n = U.shape[0]
        dropped = np.diff(drop.indptr)
        group = np.ceil(np.log2(dropped + 1)).astype(np.int64)
        for g in np.unique(group):
            rows = np.flatnonzero(group == g)
            fetch = min(k + (int(2 ** g) if g else 0), self.n_items)
            step = max(1, FETCH_ENTRIES // fetch)
            for s in range(0, len(rows), step):
                part = rows[s: s + step]
                whole = len(part) == n  # a single query, or one group: no row selection
                D, I = self.index.search(U if whole else U[part], fetch, params=self._params(options, selector))
                sub = drop if whole else drop[part]
                scores[part], ids[part] = _drop_items(np.asarray(D, dtype=np.float32), np.asarray(I, dtype=np.int64),
                                                      sub, k, self.n_items)

    def _fetch(self, u, drop_row, k, options, selector):
        """One query's answer (scores, ids) under its own selector."""
        fetch = min(k + drop_row.nnz, self.n_items)
        D, I = self.index.search(u, fetch, params=self._params(options, selector))
        s, i = _drop_items(np.asarray(D, dtype=np.float32), np.asarray(I, dtype=np.int64), drop_row, k, self.n_items)
        return s[0], i[0]

    def _check_knobs(self, options: FaissSearchOptions) -> None:
        if options.ef_search is not None and "HNSW" not in self.spec:
            raise DataError(f"--ef-search applies to HNSW indexes; this one is {self.spec!r}")
        if options.nprobe is not None and _ivf(self.index) is None:
            raise DataError(f"--nprobe applies to IVF indexes; this one is {self.spec!r}")

    def _params(self, options: FaissSearchOptions, selector):
        """FAISS search parameters for the knobs and the selector (None when neither is set)."""
        faiss = _faiss()
        extra = {} if selector is None else {"sel": selector}
        if options.ef_search is not None:
            return faiss.SearchParametersHNSW(efSearch=options.ef_search, **extra)
        if options.nprobe is not None:
            return faiss.SearchParametersIVF(nprobe=options.nprobe, **extra)
        return faiss.SearchParameters(**extra) if extra else None


def check_factory(spec: str, dims: int):
    """An empty FAISS index for the factory string ``spec`` over ``dims`` dimensions, or a DataError."""
    faiss = _faiss()
    try:
        return faiss.index_factory(int(dims), spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise DataError(f"FAISS cannot build {spec!r} for {dims} dims: {_faiss_message(exc)}; "
                        "e.g. 'Flat', 'HNSW32,Flat', 'IVF256,Flat'") from None


def _read_faiss(faiss, files: fmt.IndexFiles, where: str):
    """The FAISS index of one build: memory-mapped where its type allows, else read into memory."""
    try:
        return faiss.read_index(files.native_path(FAISS_FILE), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        pass
    try:  # HNSW and some other index types cannot be mapped
        return faiss.deserialize_index(np.frombuffer(files.read_bytes(FAISS_FILE), dtype=np.uint8))
    except RuntimeError as exc:
        raise IndexFormatError(f"{where}: not a readable FAISS index: {_faiss_message(exc)}") from None


def _ivf(index):
    """The IVF layer of a FAISS index, or None."""
    faiss = _faiss()
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _faiss_message(exc: Exception) -> str:
    """The useful line of a FAISS C++ exception."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Error"):
            return ln
    return lines[-1] if lines else type(exc).__name__


def _unblocked(items: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """The items no mask blocks."""
    return items[blocked[items] == 0] if blocked.size else items


def _bitmap_selector(faiss, blocked: np.ndarray):
    """An IDSelector of the items not blocked, and the bitmap it reads (keep it alive); (None, None) if none is."""
    if not blocked.size:
        return None, None
    bitmap = np.packbits(blocked == 0, bitorder="little")
    return faiss.IDSelectorBitmap(len(blocked), faiss.swig_ptr(bitmap)), bitmap


def _dropped(Q: sp.csr_matrix | None, filters, n: int, n_items: int) -> sp.csr_matrix:
    """Per query, the items to drop from FAISS's neighbours: its history (when excluded) and its exclusions."""
    ex = sp.csr_matrix((np.ones(len(filters.ex_items), dtype=np.float32), filters.ex_items.astype(np.int64),
                        filters.ex_indptr), shape=(n, n_items))
    if Q is None:
        return ex
    out = (abs(Q) + ex).tocsr()
    out.sort_indices()
    return out


def _drop_items(D: np.ndarray, I: np.ndarray, drop: sp.csr_matrix, k: int, n_items: int):
    """Remove dropped items and FAISS's -1 fillers from each row, keep the first k, pad with -1 / -inf."""
    n, fetch = I.shape
    invalid = I < 0
    if drop.nnz:
        rows = np.repeat(np.arange(n, dtype=np.int64), fetch)
        keys = rows * n_items + np.where(invalid, 0, I).ravel()
        hist = np.repeat(np.arange(n, dtype=np.int64), np.diff(drop.indptr)) * n_items + drop.indices
        invalid |= np.isin(keys, hist).reshape(n, fetch)
    order = np.argsort(invalid, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(I, order, 1)
    scores = np.take_along_axis(D, order, 1)
    dropped = np.take_along_axis(invalid, order, 1)
    ids[dropped] = -1
    scores[dropped] = -np.inf
    if ids.shape[1] < k:  # fewer items than k in the whole catalogue
        pad = k - ids.shape[1]
        ids = np.hstack([ids, np.full((n, pad), -1, dtype=np.int64)])
        scores = np.hstack([scores, np.full((n, pad), -np.inf, dtype=np.float32)])
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
