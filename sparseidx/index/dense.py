"""The FAISS-backed index for dense low-rank embeddings, with the sparse index's search contract.

Priors are folded into the stored vectors (V_i' = prior_i V_i), so FAISS's inner
product is the score; a query is u = x E. History items are masked by fetching
k + |history| neighbours and dropping them, so answers follow the same rules as
the sparse engine: history never returned, -1 / -inf padding when fewer than k
items remain, popular items for an empty history.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ..errors import DataError, IndexFormatError, OutputError, require
from ..factors import DenseFactors
from ..openblas import import_pinned
from . import format as fmt
from .histories import HistoryEncoder, check_k
from .sparse import SearchResult

FAISS_FILE = "vectors.faiss"
SPARSE_ONLY = ("query_dims", "query_mass", "budget", "prune", "candidates")
FETCH_ENTRIES = 1 << 24  # neighbours fetched per FAISS call at most (bounds the result buffers)


def _faiss():
    # faiss-cpu's bundled OpenBLAS may not know this CPU: see sparseidx/openblas.py
    return import_pinned("faiss", lambda name: require(name, "all", "the FAISS backend"))


class DenseIndex(HistoryEncoder):
    """Inner-product search over dense item embeddings with FAISS: score = prior_i * <x E, V_i>.

    Build with ``DenseIndex.build(factors, faiss_index="HNSW32,Flat")``, save with
    ``write(path)``, load with ``DenseIndex.open(path)``, query with ``search``.
    """

    backend = "faiss"

    def __init__(self, index, encoder: np.ndarray, priors: np.ndarray, item_ids: np.ndarray,
                 popularity: np.ndarray | None, manifest: dict):
        self.index = index
        self.encoder = encoder
        self.priors = priors
        self.popularity = popularity
        self.manifest = manifest
        super().__init__(item_ids)

    @property
    def n_items(self) -> int:
        return len(self.priors)

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
    def open(cls, path: str | os.PathLike, verify: bool = True, files: fmt.IndexFiles | None = None
             ) -> "DenseIndex":
        """Open an index directory (FAISS memory-maps Flat and IVF indexes); checksums checked first."""
        if files is None:
            with fmt.open_files(path) as files:
                return cls.open(path, verify, files)
        faiss = _faiss()
        path, manifest = files.path, files.manifest
        if manifest["backend"] != cls.backend:
            raise IndexFormatError(f"{path}: a {manifest['backend']!r} index, not a FAISS one")
        files.ensure_intact(checksums=verify)
        index = _read_faiss(faiss, files, f"{path}/{FAISS_FILE}")
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
        fmt.check_finite(path, {"encoder.arrow": flat, "items.arrow": priors})
        return cls(index, flat.reshape(n, d), priors, item_ids, popularity, manifest)

    # ---- querying -------------------------------------------------------------------------
    def search(self, histories, k: int = 20, **options) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for each history: (scores float32 (n, k), ids int64 (n, k)).

        Options: ``ef_search`` (HNSW), ``nprobe`` (IVF), ``threads``,
        ``exclude_history``, ``skip_unknown``. Same contract as ``SparseIndex.search``.
        """
        res = self.search_detailed(histories, k, **options)
        return res.scores, res.ids

    def search_detailed(self, histories, k: int = 20, ef_search: int | None = None, nprobe: int | None = None,
                        threads: int | None = None, exclude_history: bool = True, skip_unknown: bool = False,
                        **sparse_options) -> SearchResult:
        """Like ``search`` but also returns popularity flags; postings are not counted (zeros) and
        every item outside the history counts as scored (coverage)."""
        faiss = _faiss()
        given = sorted(name for name in sparse_options if sparse_options[name] is not None)
        unknown = sorted(set(sparse_options) - set(SPARSE_ONLY))
        if unknown:
            raise TypeError(f"unexpected search option(s): {', '.join(unknown)}")
        if given:
            names = ", ".join("--" + g.replace("_", "-") for g in given)
            raise DataError(f"{names} appl{'ies' if len(given) == 1 else 'y'} to sparse indexes; "
                            f"this index is FAISS {self.spec!r} (use --ef-search / --nprobe)")
        k = check_k(k, self.n_items)
        params = self._params(ef_search, nprobe)
        Q = self.histories_matrix(histories, skip_unknown=skip_unknown)
        n = Q.shape[0]
        U = np.ascontiguousarray(Q @ self.encoder, dtype=np.float32) if n else np.zeros((0, self.n_dims), np.float32)
        hist_len = np.diff(Q.indptr)
        scores = np.empty((n, k), dtype=np.float32)
        ids = np.empty((n, k), dtype=np.int64)
        previous = faiss.omp_get_max_threads()
        if threads is not None:
            if threads < 1:
                raise DataError(f"threads must be at least 1, got {threads}")
            faiss.omp_set_num_threads(threads)
        try:
            # queries grouped by history length (powers of two), so that over-fetching k + |history|
            # neighbours costs memory in proportion to each group's own histories, not the longest one
            group = np.ceil(np.log2(hist_len + 1)).astype(np.int64) if exclude_history else np.zeros(n, np.int64)
            for g in np.unique(group):
                rows = np.flatnonzero(group == g)
                fetch = min(k + (int(2 ** g) if exclude_history else 0), self.n_items)
                step = max(1, FETCH_ENTRIES // fetch)
                for s in range(0, len(rows), step):
                    part = rows[s: s + step]
                    whole = len(part) == n  # a single query, or one group: no row selection
                    D, I = self.index.search(U if whole else U[part], fetch, params=params)
                    sub = (Q if whole else Q[part]) if exclude_history else None
                    scores[part], ids[part] = _drop_history(
                        np.asarray(D, dtype=np.float32), np.asarray(I, dtype=np.int64), sub, k, self.n_items)
        finally:
            faiss.omp_set_num_threads(previous)
        popular = hist_len == 0
        if popular.any():
            self._fill_popular(popular, scores, ids, k)
        scored = np.where(exclude_history, self.n_items - hist_len, self.n_items).astype(np.int64)
        return SearchResult(scores, ids, popular, np.zeros(n, dtype=np.int64), scored)

    def _params(self, ef_search, nprobe):
        faiss = _faiss()
        if ef_search is not None and nprobe is not None:
            raise DataError("give --ef-search (HNSW) or --nprobe (IVF), not both")
        if ef_search is not None:
            if "HNSW" not in self.spec:
                raise DataError(f"--ef-search applies to HNSW indexes; this one is {self.spec!r}")
            if ef_search < 1:
                raise DataError(f"ef_search must be at least 1, got {ef_search}")
            return faiss.SearchParametersHNSW(efSearch=int(ef_search))
        if nprobe is not None:
            if _ivf(self.index) is None:
                raise DataError(f"--nprobe applies to IVF indexes; this one is {self.spec!r}")
            if nprobe < 1:
                raise DataError(f"nprobe must be at least 1, got {nprobe}")
            return faiss.SearchParametersIVF(nprobe=int(nprobe))
        return None


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


def _drop_history(D: np.ndarray, I: np.ndarray, Q: sp.csr_matrix | None, k: int, n_items: int):
    """Remove history items and FAISS's -1 fillers from each row, keep the first k, pad with -1 / -inf."""
    n, fetch = I.shape
    invalid = I < 0
    if Q is not None and Q.nnz:
        rows = np.repeat(np.arange(n, dtype=np.int64), fetch)
        keys = rows * n_items + np.where(invalid, 0, I).ravel()
        hist = np.repeat(np.arange(n, dtype=np.int64), np.diff(Q.indptr)) * n_items + Q.indices
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
