"""The canonical export: Parquet with item_id, indices (sorted, unique, uint32) and values (float32).

Schema metadata (key ``sparseidx``) holds the dimension count, model, index format
version and what the columns mean. The file also carries each item's prior and,
when the encoder differs from the item embeddings, the encoder rows, so a consumer
can compute user embeddings u = x E and scores prior_i * <u, V_i> itself.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..files import OutputKind, atomic_output
from ..plain import json_default
from .rows import csr_parts, factors_of, load_histories, progress_batches, same_matrix, user_batches

META_KEY = b"sparseidx"


def parquet_kind(kind: str, what: str) -> OutputKind:
    """The OutputKind of a Parquet file whose sparseidx metadata names ``kind``."""
    def foreign(path: str) -> str | None:
        try:
            meta = pq.read_schema(path).metadata or {}
        except (pa.ArrowException, OSError):
            return "it is not a Parquet file"
        if META_KEY not in meta:
            return "it is a Parquet file that sparseidx did not write"
        try:
            found = json.loads(meta[META_KEY]).get("kind")
        except (ValueError, AttributeError):
            return "its sparseidx metadata is unreadable"
        return None if found == kind else f"it is a sparseidx {found!r} export, not {what}"
    return OutputKind(what, False, foreign)


ITEMS_FILE = parquet_kind("items", "a Parquet item export")
USERS_FILE = parquet_kind("users", "a Parquet user export")


def users_path(out: str) -> str:
    """Where the user embeddings go next to the item export ``out``: ``<out stem>.users.parquet``."""
    stem = out[: -len(".parquet")] if out.endswith(".parquet") else out
    return stem + ".users.parquet"


def id_type(ids: np.ndarray) -> pa.DataType:
    """The Arrow type of an id column: int64 for integer ids, string for any other."""
    return pa.int64() if ids.dtype.kind in "iu" else pa.string()


def id_column(ids: np.ndarray, type_: pa.DataType) -> pa.Array:
    """An id column of ``type_`` (see ``id_type``)."""
    return pa.array(ids if pa.types.is_integer(type_) else ids.astype(str), type=type_)


def list_column(indptr: np.ndarray, values: np.ndarray, dtype) -> pa.ListArray:
    """A list<dtype> column from CSR parts of one batch."""
    return pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(values.astype(dtype)))


def description(index, kind: str, **more) -> dict:
    """What a sparseidx export of ``kind`` holds: counts, model, and how scores are computed (plus ``more``)."""
    m = index.manifest
    return {"kind": kind, "n_dims": int(index.n_dims), "n_items": int(index.n_items), "model": m.get("model"),
            "index_format_version": m.get("format_version"), "created_by": m.get("created_by"),
            "score": "prior_i * <u, V_i> with u = x E", **more, "params": m.get("params", {})}


def metadata(index, kind: str, shared_encoder: bool, **more) -> dict:
    """Schema metadata of a sparseidx Parquet export of ``kind``: ``description`` under the key ``sparseidx``."""
    meta = description(index, kind, encoder_equals_embeddings=shared_encoder, **more)
    return {META_KEY: json.dumps(meta, default=json_default).encode()}


def write_parquet(index, out: str, overwrite: bool = False, users: str | None = None) -> dict:
    """Write the canonical item file ``out`` and, given a histories file ``users``, the user file beside it.

    The histories are read before anything is written, and the two files appear together or not at all.
    """
    factors = factors_of(index)
    histories = load_histories(index, users) if users is not None else None
    users_out = users_path(out)
    with contextlib.ExitStack() as both:
        items_tmp = both.enter_context(atomic_output(out, ITEMS_FILE, overwrite))
        if histories is not None:
            users_tmp = both.enter_context(atomic_output(users_out, USERS_FILE, overwrite))
            n_users = _write_users(index, factors, histories, users_tmp)
        n_items = _write_items(index, factors, items_tmp)
    summary = {"target": "parquet", "out": out, "items": n_items, "bytes": os.path.getsize(out)}
    if histories is not None:
        summary["users"] = {"target": "parquet", "out": users_out, "users": n_users,
                            "bytes": os.path.getsize(users_out)}
    return summary


def _write_items(index, factors, path: str) -> int:
    """Write the item rows to ``path``, one row group per batch; returns the row count."""
    shared = same_matrix(factors.encoder, factors.embeddings)
    e_parts = csr_parts(factors.encoder)
    ids = id_type(factors.item_ids)
    fields = [pa.field("item_id", ids), pa.field("indices", pa.list_(pa.uint32())),
              pa.field("values", pa.list_(pa.float32())), pa.field("prior", pa.float32())]
    if factors.popularity is not None:
        fields.append(pa.field("popularity", pa.int64()))
    if not shared:
        fields += [pa.field("encoder_indices", pa.list_(pa.uint32())),
                   pa.field("encoder_values", pa.list_(pa.float32()))]
    schema = pa.schema(fields, metadata=metadata(index, "items", shared))
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for b in progress_batches(*csr_parts(factors.embeddings), factors.item_ids, "items"):
            sl = slice(b.start, b.start + len(b))
            cols = {"item_id": id_column(b.ids, ids), "indices": list_column(b.indptr, b.dims, np.uint32),
                    "values": list_column(b.indptr, b.weights, np.float32),
                    "prior": pa.array(np.asarray(factors.priors[sl], dtype=np.float32))}
            if factors.popularity is not None:
                cols["popularity"] = pa.array(np.asarray(factors.popularity[sl], dtype=np.int64))
            if not shared:
                a, z = e_parts[0][b.start], e_parts[0][b.start + len(b)]
                e_indptr = np.asarray(e_parts[0][b.start: b.start + len(b) + 1]) - a
                cols["encoder_indices"] = list_column(e_indptr, np.asarray(e_parts[1][a:z]), np.uint32)
                cols["encoder_values"] = list_column(e_indptr, np.asarray(e_parts[2][a:z]), np.float32)
            writer.write_table(pa.table(cols, schema=schema))
            rows += len(b)
    return rows


def _write_users(index, factors, histories, path: str) -> int:
    """Write user embeddings u = x E of the loaded ``histories`` to ``path``, streaming; returns the user count."""
    ids = id_type(histories.user_ids)
    schema = pa.schema([pa.field("user_id", ids), pa.field("indices", pa.list_(pa.uint32())),
                        pa.field("values", pa.list_(pa.float32()))],
                       metadata=metadata(index, "users", same_matrix(factors.encoder, factors.embeddings)))
    users = 0
    with pq.ParquetWriter(path, schema) as writer:
        for user_ids, U in user_batches(factors.encoder, histories):
            indptr = U.indptr.astype(np.int64)
            writer.write_table(pa.table({"user_id": id_column(user_ids, ids),
                                         "indices": list_column(indptr, U.indices, np.uint32),
                                         "values": list_column(indptr, U.data, np.float32)}, schema=schema))
            users += U.shape[0]
    return users


def read_parquet_factors(path: str):
    """Factors from a canonical item export (the inverse of ``write_items``)."""
    import scipy.sparse as sp

    from ..factors import Factors

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DataError(f"{path}: no sparseidx metadata; write it with 'sparseidx export --to parquet'")
    meta = json.loads(raw)
    if meta.get("kind") != "items":
        raise DataError(f"{path}: holds {meta.get('kind')} embeddings; import an item export")
    missing = {"item_id", "indices", "values"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    n, d = table.num_rows, int(meta["n_dims"])

    def matrix(ind_col, val_col):
        ind = table[ind_col].combine_chunks()
        val = table[val_col].combine_chunks()
        indptr = ind.offsets.to_numpy().astype(np.int64)
        if not np.array_equal(indptr, val.offsets.to_numpy()):
            raise DataError(f"{path}: '{ind_col}' and '{val_col}' have different lengths in some row")
        dims = ind.values.to_numpy().astype(np.int64)
        if len(dims) and dims.max() >= d:
            raise DataError(f"{path}: an index in '{ind_col}' is >= the dimension count {d}")
        # copies: Arrow's buffers are read-only and scipy canonicalises in place
        return sp.csr_matrix((np.array(val.values.to_numpy(), dtype=np.float32), dims, indptr), shape=(n, d))

    V = matrix("indices", "values")
    E = V if meta.get("encoder_equals_embeddings", True) else matrix("encoder_indices", "encoder_values")
    priors = np.array(table["prior"]) if "prior" in table.column_names else np.ones(n, dtype=np.float32)
    pop = np.array(table["popularity"]) if "popularity" in table.column_names else None
    return Factors(encoder=E, embeddings=V, priors=priors, item_ids=np.array(table["item_id"]),
                   model="imported", params={"source": os.path.basename(path), "exported_model": meta.get("model")},
                   popularity=pop)
