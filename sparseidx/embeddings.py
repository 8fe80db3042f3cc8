"""Item embeddings trained elsewhere, read into the one shape (``Factors``) from .npz or Parquet files."""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .export.parquet import read_parquet_factors
from .factors import Factors


def load_embeddings(path: str | os.PathLike, item_ids: np.ndarray | None = None) -> Factors:
    """Import embeddings trained elsewhere from an ``.npz`` or canonical Parquet export.

    ``.npz``: either a scipy sparse matrix saved by ``scipy.sparse.save_npz`` (used
    as both encoder and item embeddings), or arrays ``encoder`` / ``embeddings``
    (sparse: ``{name}_data``, ``{name}_indices``, ``{name}_indptr``, ``{name}_shape``;
    or dense 2-d arrays), with optional ``priors`` and ``item_ids``.
    ``.parquet``: the file written by ``sparseidx export --to parquet``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.endswith((".parquet", ".pq")):
        return read_parquet_factors(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None
    keys = set(archive.files)
    if {"data", "indices", "indptr", "shape", "format"} <= keys:
        E = V = sp.load_npz(path).tocsr()
    else:
        E = _matrix_from_npz(path, archive, "encoder")
        V = _matrix_from_npz(path, archive, "embeddings")
        if E is None and V is None:
            raise DataError(f"{path}: holds neither a scipy sparse matrix nor 'encoder'/'embeddings' arrays "
                            f"(found {sorted(keys)})")
        E = V if E is None else E
        V = E if V is None else V
    n = V.shape[0]
    priors = archive["priors"] if "priors" in keys else np.ones(n, dtype=np.float32)
    if "item_ids" in keys:
        ids = archive["item_ids"]
    elif item_ids is not None:
        ids = item_ids
    else:
        ids = np.arange(n, dtype=np.int64)
    if len(ids) != n:
        raise DataError(f"{path}: {len(ids)} item ids for {n} embedding rows")
    try:
        return Factors(encoder=E, embeddings=V, priors=priors, item_ids=ids, model="imported",
                       params={"source": os.path.basename(path)})
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _matrix_from_npz(path: str, archive, name: str):
    keys = set(archive.files)
    if name in keys:
        return sp.csr_matrix(archive[name])
    parts = [f"{name}_{p}" for p in ("data", "indices", "indptr", "shape")]
    if all(p in keys for p in parts):
        data, indices, indptr, shape = (archive[p] for p in parts)
        try:
            return sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
        except ValueError as exc:
            raise DataError(f"{path}: '{name}' is not a valid CSR matrix: {exc}") from None
    present = [p for p in parts if p in keys]
    if present:
        raise DataError(f"{path}: '{name}' is incomplete: has {present}, needs {parts}")
    return None
