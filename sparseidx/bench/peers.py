"""Methods compared by ``sparseidx bench``, each with a sweep of settings.

Every method answers the same queries (users' train histories) with history items
masked, through two entry points: ``batch`` (all queries, some threads) and
``single`` (one query, one thread, for latency); ``batch`` returns (ids, postings
per query, entries read per query), NaN where a method cannot count them. Peers
that cannot mask the history fetch k + |history| candidates and drop history items.
"""

from __future__ import annotations

import functools

import os

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, require


class Sparseidx:
    """sparseidx's own engine, exact and with query-time pruning (``name`` tells index variants apart)."""

    counts_entries = True  # batch() reports postings and entries read: the cost model applies

    def __init__(self, index, sweep: list[dict] | None = None, name: str = "sparseidx"):
        self.index = index
        self.sweep = sweep if sweep is not None else default_sparseidx_sweep()
        self.name = name

    def settings(self) -> list[dict]:
        return self.sweep

    def batch(self, H, k, setting, threads):
        res = self.index.search_detailed(H, k, options(self.index, setting, threads))
        return res.ids, float(res.postings.mean()), float(res.entries.mean())

    def single(self, row, k, setting):
        return self.index.search_detailed(row, k, options(self.index, setting, 1)).ids

    def nbytes(self) -> int:
        from ..index import format as fmt

        return fmt.index_bytes(self.index.manifest)


def default_sparseidx_sweep() -> list[dict]:
    """Exact; impact pruning with exact rescoring; then linscan-style posting budgets and query-dimension cuts."""
    sweep = [{}]
    sweep += [{"prune": p} for p in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)]
    sweep += [{"prune": p, "candidates": 100} for p in (1e-3, 3e-3, 1e-2)]
    sweep += [{"budget": b} for b in (400_000, 200_000, 100_000, 20_000)]
    sweep += [{"query_dims": m} for m in (1000, 300)]
    return sweep


class ScipyExact:
    """Exact scoring with scipy.sparse: u = xE, scores = V u, mask, argpartition."""

    name = "scipy-exact"

    def __init__(self, index):
        f = index.to_factors()
        self.E = f.encoder
        self.Vt = sp.csr_matrix(f.embeddings.T)
        self.priors = f.priors

    def settings(self) -> list[dict]:
        return [{}]

    def _answer(self, H, k):
        U = sp.csr_matrix(H @ self.E)
        S = np.asarray((U @ self.Vt).todense()) * self.priors[None, :]
        rows, cols = H.nonzero()
        S[rows, cols] = -np.inf
        return _topk_rows(S, k)

    def batch(self, H, k, setting, threads):
        out = [self._answer(H[s: s + 256], k) for s in range(0, H.shape[0], 256)]
        return np.vstack(out), float("nan"), float("nan")

    def single(self, row, k, setting):
        return self._answer(row, k)

    def nbytes(self) -> int:
        return int(sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in (self.E, self.Vt)))


def _topk_rows(S: np.ndarray, k: int) -> np.ndarray:
    k = min(k, S.shape[1])
    part = np.argpartition(-S, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(S, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


class Seismic:
    """Seismic (pyseismic-lsr) over the same item embeddings, priors folded into the vectors."""

    name = "seismic"

    def __init__(self, index, sweep: list[dict] | None = None, threads: int | None = None):
        seismic = require("seismic", "bench", "the Seismic peer")
        f = index.to_factors()
        self.E = f.encoder
        V = sp.csr_matrix(sp.diags(f.priors) @ f.embeddings)
        large = f.n_dims > 65_535
        self._str = seismic.get_seismic_string()
        dataset = (seismic.SeismicDatasetLV if large else seismic.SeismicDataset)()
        tokens = np.array([str(d) for d in range(f.n_dims)], dtype=self._str)
        for i in range(V.shape[0]):  # the peer's API takes one document per call
            a, b = V.indptr[i], V.indptr[i + 1]
            if b > a:
                dataset.add_document(str(i), tokens[V.indices[a:b]], V.data[a:b].astype(np.float32))
        cls = seismic.SeismicIndexLV if large else seismic.SeismicIndex
        kwargs = {"num_threads": threads} if threads else {}
        self.index = cls.build_from_dataset(dataset, **kwargs)
        self.tokens = tokens
        self.sweep = sweep if sweep is not None else [
            {"query_cut": qc, "heap_factor": hf} for qc in (20, 50, 100, 300) for hf in (0.7, 1.0)]
        self._nbytes = int(V.data.nbytes + V.indices.nbytes + V.indptr.nbytes)

    def settings(self) -> list[dict]:
        return self.sweep

    def _query(self, u_row):
        return self.tokens[u_row.indices], u_row.data.astype(np.float32)

    def batch(self, H, k, setting, threads):
        U = sp.csr_matrix(H @ self.E)
        hist = np.diff(H.indptr)
        fetch = k + int(hist.max() if len(hist) else 0)
        comps, vals = zip(*(self._query(U[q]) for q in range(U.shape[0])))
        qids = np.array([str(q) for q in range(U.shape[0])], dtype=self._str)
        results = self.index.batch_search(qids, list(comps), list(vals), fetch, num_threads=threads or 0, **setting)
        ids = np.full((U.shape[0], k), -1, dtype=np.int64)
        for res in results:  # batch_search returns queries out of order: key by query id
            if not res:
                continue
            q = int(res[0][0])
            ids[q] = _drop_history([int(r[2]) for r in res], H.indices[H.indptr[q]: H.indptr[q + 1]], k)
        return ids, float("nan"), float("nan")

    def single(self, row, k, setting):
        u = sp.csr_matrix(row @ self.E)
        comps, vals = self._query(u)
        res = self.index.search("0", comps, vals, k + row.nnz, **setting)
        return _drop_history([int(r[2]) for r in res], row.indices, k)[None, :]

    def nbytes(self) -> int:
        return self._nbytes


def _drop_history(candidates: list[int], history: np.ndarray, k: int) -> np.ndarray:
    hist = set(history.tolist())
    kept = [c for c in candidates if c not in hist][:k]
    return np.array(kept + [-1] * (k - len(kept)), dtype=np.int64)


class Faiss:
    """A FAISS-backed dense index (the low-rank counterpart), swept over efSearch / nprobe."""

    name = "faiss"

    def __init__(self, path: str | os.PathLike):
        from ..index import Index

        self.index = Index.open(path)
        if getattr(self.index, "backend", None) != "faiss":
            raise DataError(f"{path}: --dense-index must be a FAISS-backed index "
                            "(sparseidx build --model chol-lowrank --backend faiss ...)")
        spec = str(self.index.manifest.get("faiss_index", ""))
        self.name = f"faiss {self.index.manifest.get('model', '')} d={self.index.n_dims} {spec}".strip()
        if "HNSW" in spec:
            self.sweep = [{"ef_search": e} for e in (16, 32, 64, 128, 256, 512)]
        elif "IVF" in spec:
            self.sweep = [{"nprobe": p} for p in (1, 4, 16, 64, 256)]
        else:
            self.sweep = [{}]

    def settings(self) -> list[dict]:
        return self.sweep

    def batch(self, H, k, setting, threads):
        return self.index.search_detailed(H, k, options(self.index, setting, threads)).ids, float("nan"), float("nan")

    def single(self, row, k, setting):
        return self.index.search_detailed(row, k, options(self.index, setting, 1)).ids

    def nbytes(self) -> int:
        from ..index import format as fmt

        return fmt.index_bytes(self.index.manifest)


@functools.lru_cache(maxsize=256)
def _options(index, setting: tuple, threads: int | None):
    return index.Options(threads=threads, **dict(setting))


def options(index, setting: dict, threads: int | None):
    """The index's options object for a sweep setting on ``threads`` threads, made once per setting (as a
    caller would), so that timings hold the query, not the options' validation."""
    return _options(index, tuple(sorted(setting.items())), threads)
