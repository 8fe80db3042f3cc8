"""A view's index rebuilt from every row Feast's SQLite store holds for it, then swapped in atomically.

SQLite is the source of truth: ``materialize`` (and ``materialize-incremental``, which writes
only new rows) upserts rows there first; the index is then built from all the view's rows
and written with ``Index.build(factors).write(dir, overwrite=True)``, a new generation that
replaces the old one in one step, so readers see the old or the new index, never a mix.
"""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import scipy.sparse as sp
from feast.infra.key_encoding_utils import deserialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from ...errors import DataError
from ...factors import Factors
from ...index import Index
from .views import FIELDS, index_dir, repo_path, view_dims, view_name


def rebuild_index(config, table) -> dict:
    """Build the view's index from the rows in SQLite and replace the old one; returns ``Index.info()``."""
    factors = read_factors(config, table)
    out = index_dir(config, table)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    index = Index.build(factors)
    index.write(out, overwrite=True)
    return index.info()


def read_factors(config, table) -> Factors:
    """The view's item embeddings as Factors, items sorted by id (as in an index sparseidx trained:
    the engine's tie-breaking and pruned candidates depend on the item order)."""
    rows = _read_rows(config, table)
    if not rows:
        raise DataError(f"feature view {view_name(table)!r} has no rows in the online store to index")
    ids = sorted(rows)
    dims = view_dims(table)
    V = _csr([rows[i]["indices"] for i in ids], [rows[i]["values"] for i in ids], dims, table)
    E = _csr([rows[i]["encoder_indices"] for i in ids], [rows[i]["encoder_values"] for i in ids], dims, table)
    n_dims = max(V.shape[1], E.shape[1])
    V.resize(len(ids), n_dims)
    E.resize(len(ids), n_dims)
    priors = np.array([rows[i]["prior"] for i in ids], dtype=np.float32)
    item_ids = np.array(ids) if all(isinstance(i, str) for i in ids) else np.array(ids, dtype=np.int64)
    return Factors(encoder=E, embeddings=V, priors=priors, item_ids=item_ids, model="imported", popularity=None)


def _read_rows(config, table) -> dict:
    """{item id: {field: value}} for every item with all five fields."""
    name = compute_table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
    db = repo_path(config, config.online_store.path)
    quoted = '"' + name.replace('"', '""') + '"'
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True) if os.path.exists(db) else None
    if conn is None:
        raise DataError(f"the online store {db} does not exist; run 'feast apply' first")
    try:
        cur = conn.execute(f"SELECT entity_key, feature_name, value FROM {quoted} "
                           f"WHERE feature_name IN ({', '.join('?' * len(FIELDS))})", FIELDS)
        rows: dict = {}
        keys: dict = {}
        for key, feature, blob in cur:
            item = keys.get(key)
            if item is None:
                item = keys[key] = _item_id(key, config.entity_key_serialization_version)
            rows.setdefault(item, {})[feature] = _value(blob, feature)
    except sqlite3.Error as exc:
        raise DataError(f"cannot read feature view {view_name(table)!r} from {db}: {exc}") from None
    finally:
        conn.close()
    return {item: row for item, row in rows.items() if len(row) == len(FIELDS)}


def _item_id(key: bytes, version: int):
    """The item id (int or str) of a serialized one-entity key."""
    proto = deserialize_entity_key(key, entity_key_serialization_version=version)
    if len(proto.entity_values) != 1:
        raise DataError("an item view's entity key must hold exactly one value (the item id)")
    value = proto.entity_values[0]
    kind = value.WhichOneof("val")
    if kind in ("int64_val", "int32_val"):
        return int(getattr(value, kind))
    if kind == "string_val":
        return value.string_val
    raise DataError(f"item ids must be integers or strings, not {kind}")


def _value(blob: bytes, feature: str):
    """A stored ValueProto as a numpy array (list fields) or a float (prior); None when unset."""
    value = ValueProto()
    value.ParseFromString(blob)
    if feature == "prior":
        return float(getattr(value, value.WhichOneof("val") or "float_val"))
    kind = "int32_list_val" if feature.endswith("indices") else "float_list_val"
    if value.WhichOneof("val") not in (kind, None):
        raise DataError(f"feature {feature!r} holds {value.WhichOneof('val')}, expected {kind}")
    return np.asarray(getattr(value, kind).val, dtype=np.int64 if kind == "int32_list_val" else np.float32)


def _csr(indices: list, values: list, n_dims: int | None, table) -> sp.csr_matrix:
    """Rows of (indices, values) as a CSR matrix with at least ``n_dims`` columns."""
    lengths = np.array([len(i) for i in indices], dtype=np.int64)
    if not np.array_equal(lengths, [len(v) for v in values]):
        raise DataError(f"feature view {view_name(table)!r}: an item's indices and values differ in length")
    cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    if cols.size and cols.min() < 0:
        raise DataError(f"feature view {view_name(table)!r}: negative dimension index {int(cols.min())}")
    width = int(cols.max()) + 1 if cols.size else 0
    if n_dims is not None:
        if width > n_dims:
            raise DataError(f"feature view {view_name(table)!r}: dimension {width - 1} is out of range "
                            f"for {n_dims} dimensions (tag sparseidx.n_dims)")
        width = n_dims
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = np.concatenate(values) if values else np.zeros(0, dtype=np.float32)
    return sp.csr_matrix((data.astype(np.float32), cols, indptr), shape=(len(indices), max(width, 1)))
