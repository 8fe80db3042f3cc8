"""Sparse-vector formats of the major vector stores, written as streaming files.

- Milvus: Parquet with ``id`` int64, ``item_id`` and a ``embedding``
  ``struct<indices: list<uint32>, values: list<float32>>`` column (bulk import of a
  SPARSE_FLOAT_VECTOR field).
- Qdrant: JSONL points ``{"id", "vector": {NAME: {"indices", "values"}}, "payload"}``.
- pgvector: tab-separated ``item_id`` and ``sparsevec`` text ``{i:v,...}/dims`` with
  1-based indices, ready for ``\\copy items FROM ... `` (HNSW on sparsevec takes at most
  1,000 non-zeros: warned).
- Vespa: JSONL feed of ``put`` operations with a mapped tensor ``tensor<float>(d{})``.
- Elasticsearch / OpenSearch: NDJSON bulk with a ``sparse_vector`` / ``rank_features``
  object; these take strictly positive weights only, so negative weights are refused
  or, on request, split into ``NAME_pos`` and ``NAME_neg`` (absolute values) fields.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..files import atomic_output
from ..progress import log
from .parquet import list_column
from .rows import item_parts, progress_batches, sparse_index

PGVECTOR_HNSW_MAX_NNZ = 1000


def _plain(value):
    """A JSON-friendly item id (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value


def _item_batches(index):
    return progress_batches(*item_parts(sparse_index(index)), index.item_ids, "items")


def write_milvus(index, out: str, overwrite: bool = False, field: str = "embedding") -> dict:
    """Parquet for Milvus bulk import: id, item_id and the sparse vector as a struct column."""
    index = sparse_index(index)
    struct = pa.struct([pa.field("indices", pa.list_(pa.uint32())), pa.field("values", pa.list_(pa.float32()))])
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("item_id", pa.array(index.item_ids[:0]).type),
                        pa.field(field, struct)])
    with atomic_output(out, overwrite) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for b in _item_batches(index):
            vec = pa.StructArray.from_arrays([list_column(b.indptr, b.dims, np.uint32),
                                              list_column(b.indptr, b.weights, np.float32)],
                                             fields=list(struct))
            writer.write_table(pa.table({"id": pa.array(np.arange(b.start, b.start + len(b), dtype=np.int64)),
                                         "item_id": pa.array(b.ids), field: vec}, schema=schema))
    return {"target": "milvus", "out": out, "items": index.n_items, "bytes": os.path.getsize(out)}


def _write_lines(index, out, overwrite, target, line_of_row, header=None) -> dict:
    with atomic_output(out, overwrite) as tmp, open(tmp, "w") as fh:
        if header:
            fh.write(header)
        for b in _item_batches(index):
            for r in range(len(b)):
                dims, weights = b.row(r)
                fh.write(line_of_row(b.start + r, _plain(b.ids[r]), dims, weights))
    return {"target": target, "out": out, "items": index.n_items, "bytes": os.path.getsize(out)}


def write_qdrant(index, out: str, overwrite: bool = False, field: str = "embedding") -> dict:
    """JSONL points for Qdrant (ids are the item's row number; the item id is in the payload)."""
    def line(row, item_id, dims, weights):
        return json.dumps({"id": row, "vector": {field: {"indices": dims.tolist(), "values": weights.tolist()}},
                           "payload": {"item_id": item_id}}) + "\n"
    return _write_lines(sparse_index(index), out, overwrite, "qdrant", line)


def sparsevec_text(dims: np.ndarray, weights: np.ndarray, n_dims: int) -> str:
    """pgvector's sparsevec literal: ``{i:v,...}/n`` with 1-based indices."""
    body = ",".join(f"{d + 1}:{float(w)!r}" for d, w in zip(dims.tolist(), weights.tolist()))
    return f"{{{body}}}/{n_dims}"


def write_pgvector(index, out: str, overwrite: bool = False) -> dict:
    """Tab-separated item_id and sparsevec text, for COPY into a ``sparsevec(dims)`` column."""
    index = sparse_index(index)
    lengths = np.diff(np.asarray(item_parts(index)[0]))
    over = int((lengths > PGVECTOR_HNSW_MAX_NNZ).sum())
    if over:
        log.warning("Warning: %d items have more than %d non-zeros; pgvector's HNSW index on sparsevec takes at "
                    "most %d (exact search still works)", over, PGVECTOR_HNSW_MAX_NNZ, PGVECTOR_HNSW_MAX_NNZ)

    def line(row, item_id, dims, weights):
        return f"{item_id}\t{sparsevec_text(dims, weights, index.n_dims)}\n"
    summary = _write_lines(index, out, overwrite, "pgvector", line)
    summary["sql"] = (f"CREATE TABLE items (item_id {'bigint' if index.item_ids.dtype.kind in 'iu' else 'text'} "
                      f"PRIMARY KEY, embedding sparsevec({index.n_dims})); "
                      f"\\copy items FROM '{os.path.basename(out)}'")
    summary["items_over_hnsw_limit"] = over
    return summary


def write_vespa(index, out: str, overwrite: bool = False, field: str = "embedding",
                namespace: str = "sparseidx", doctype: str = "item") -> dict:
    """Vespa JSONL feed: one put per item with a mapped tensor field ``tensor<float>(d{})``."""
    def line(row, item_id, dims, weights):
        cells = {str(d): float(w) for d, w in zip(dims.tolist(), weights.tolist())}
        return json.dumps({"put": f"id:{namespace}:{doctype}::{item_id}",
                           "fields": {"item_id": item_id, field: cells}}) + "\n"
    return _write_lines(sparse_index(index), out, overwrite, "vespa", line)


def write_elasticsearch(index, out: str, overwrite: bool = False, field: str = "embedding",
                        index_name: str = "items", split_signs: bool = False) -> dict:
    """NDJSON bulk body for Elasticsearch / OpenSearch ``sparse_vector`` / ``rank_features`` fields."""
    index = sparse_index(index)
    weights_all = np.asarray(item_parts(index)[2])
    negative = int((weights_all < 0).sum())
    if negative and not split_signs:
        raise DataError(f"{negative:,} of {len(weights_all):,} embedding weights are negative, but Elasticsearch "
                        "and OpenSearch sparse_vector / rank_features take strictly positive values; pass "
                        "--split-signs to write them as two fields (NAME_pos, NAME_neg with absolute values) "
                        "and score <u,v> = u+.v+ + u-.v- - u+.v- - u-.v+")

    def line(row, item_id, dims, weights):
        doc = {"item_id": item_id}
        keys = [str(d) for d in dims.tolist()]
        vals = weights.tolist()
        if split_signs:
            doc[f"{field}_pos"] = {k: v for k, v in zip(keys, vals) if v > 0}
            doc[f"{field}_neg"] = {k: -v for k, v in zip(keys, vals) if v < 0}
        else:
            doc[field] = dict(zip(keys, vals))
        action = {"index": {"_index": index_name, "_id": str(item_id)}}
        return json.dumps(action) + "\n" + json.dumps(doc) + "\n"
    summary = _write_lines(index, out, overwrite, "elasticsearch", line)
    summary["negative_weights"] = negative
    return summary
