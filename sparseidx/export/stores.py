"""Sparse-vector formats of the major vector stores, written as streaming files.

- Milvus: Parquet with ``id`` int64, ``item_id`` and a ``embedding``
  ``struct<indices: list<uint32>, values: list<float32>>`` column (bulk import of a
  SPARSE_FLOAT_VECTOR field).
- Qdrant: JSONL points ``{"id", "vector": {NAME: {"indices", "values"}}, "payload"}``.
- pgvector: PostgreSQL's COPY text format (tab-separated, backslash escapes) with
  ``item_id`` and ``sparsevec`` text ``{i:v,...}/dims`` with 1-based indices, ready for
  ``psql -c 'COPY items FROM STDIN' < FILE`` (HNSW on sparsevec takes at most 1,000
  non-zeros: warned).
- Vespa: JSONL feed of ``put`` operations with a mapped tensor ``tensor<float>(d{})``.
- Elasticsearch / OpenSearch: NDJSON bulk with a ``sparse_vector`` / ``rank_features``
  object; these take strictly positive weights only, so negative weights are refused
  or, on request, split into ``NAME_pos`` and ``NAME_neg`` (absolute values) fields.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..files import OutputKind, atomic_output
from ..plain import plain
from ..progress import log
from .parquet import id_column, id_type, list_column, metadata, parquet_kind
from .rows import item_parts, progress_batches, sparse_index

PGVECTOR_HNSW_MAX_NNZ = 1000
MAX_FIRST_LINE = 1 << 26  # bytes read to recognise a previous export by its first line


def _json_line(line: bytes):
    """The JSON value of a line, or None if it is not JSON."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def _is_qdrant(line: bytes) -> bool:
    doc = _json_line(line)
    return isinstance(doc, dict) and set(doc) == {"id", "vector", "payload"}


def _is_vespa(line: bytes) -> bool:
    doc = _json_line(line)
    return (isinstance(doc, dict) and isinstance(doc.get("put"), str) and doc["put"].startswith("id:")
            and isinstance(doc.get("fields"), dict))


def _is_elasticsearch(line: bytes) -> bool:
    doc = _json_line(line)
    return (isinstance(doc, dict) and set(doc) == {"index"} and isinstance(doc["index"], dict)
            and "_index" in doc["index"])


def _is_pgvector(line: bytes) -> bool:
    return re.fullmatch(rb"[^\t\n]*\t\{[^{}\t\n]*\}/[0-9]+\n?", line) is not None


def lines_kind(what: str, shape: str, looks_like: Callable[[bytes], bool]) -> OutputKind:
    """The OutputKind of a text export recognised by its first line (``shape`` says what that line is)."""
    def foreign(path: str) -> str | None:
        with open(path, "rb") as fh:
            line = fh.readline(MAX_FIRST_LINE + 1)
        if not line:
            return None  # an empty file holds nothing to lose
        if len(line) > MAX_FIRST_LINE or not looks_like(line):
            return f"its first line is not {shape}"
        return None
    return OutputKind(what, False, foreign)


MILVUS_FILE = parquet_kind("milvus", "a Milvus Parquet export")
QDRANT_FILE = lines_kind("a Qdrant JSONL export", 'a Qdrant point {"id", "vector", "payload"}', _is_qdrant)
PGVECTOR_FILE = lines_kind("a pgvector COPY file", "an item id, a tab and sparsevec text {i:v,...}/dims",
                           _is_pgvector)
VESPA_FILE = lines_kind("a Vespa JSONL feed", 'a Vespa put {"put": "id:...", "fields": {...}}', _is_vespa)
ELASTICSEARCH_FILE = lines_kind("an Elasticsearch NDJSON bulk body", 'a bulk action {"index": {"_index": ...}}',
                                _is_elasticsearch)


def _item_batches(index):
    return progress_batches(*item_parts(sparse_index(index)), index.item_ids, "items")


def write_milvus(index, out: str, overwrite: bool = False, field: str = "embedding") -> dict:
    """Parquet for Milvus bulk import: id, item_id and the sparse vector as a struct column."""
    index = sparse_index(index)
    ids = id_type(index.item_ids)
    struct = pa.struct([pa.field("indices", pa.list_(pa.uint32())), pa.field("values", pa.list_(pa.float32()))])
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("item_id", ids), pa.field(field, struct)],
                       metadata=metadata(index, "milvus", index.forward is None))
    with atomic_output(out, MILVUS_FILE, overwrite) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for b in _item_batches(index):
            vec = pa.StructArray.from_arrays([list_column(b.indptr, b.dims, np.uint32),
                                              list_column(b.indptr, b.weights, np.float32)],
                                             fields=list(struct))
            writer.write_table(pa.table({"id": pa.array(np.arange(b.start, b.start + len(b), dtype=np.int64)),
                                         "item_id": id_column(b.ids, ids), field: vec}, schema=schema))
    return {"target": "milvus", "out": out, "items": index.n_items, "bytes": os.path.getsize(out)}


def _write_lines(index, out, overwrite, kind, target, line_of_row) -> dict:
    with atomic_output(out, kind, overwrite) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        for b in _item_batches(index):
            for r in range(len(b)):
                dims, weights = b.row(r)
                fh.write(line_of_row(b.start + r, plain(b.ids[r]), dims, weights))
    return {"target": target, "out": out, "items": index.n_items, "bytes": os.path.getsize(out)}


def write_qdrant(index, out: str, overwrite: bool = False, field: str = "embedding") -> dict:
    """JSONL points for Qdrant (ids are the item's row number; the item id is in the payload)."""
    def line(row, item_id, dims, weights):
        return json.dumps({"id": row, "vector": {field: {"indices": dims.tolist(), "values": weights.tolist()}},
                           "payload": {"item_id": item_id}}) + "\n"
    return _write_lines(sparse_index(index), out, overwrite, QDRANT_FILE, "qdrant", line)


def sparsevec_text(dims: np.ndarray, weights: np.ndarray, n_dims: int) -> str:
    """pgvector's sparsevec literal: ``{i:v,...}/n`` with 1-based indices."""
    body = ",".join(f"{d + 1}:{float(w)!r}" for d, w in zip(dims.tolist(), weights.tolist()))
    return f"{{{body}}}/{n_dims}"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value) -> str:
    """``value`` as a field of PostgreSQL's COPY text format: backslash, tab, newline and CR escaped."""
    return str(value).translate(_COPY_ESCAPES)


def write_pgvector(index, out: str, overwrite: bool = False) -> dict:
    """item_id and sparsevec text in PostgreSQL's COPY text format, for a ``sparsevec(dims)`` column."""
    index = sparse_index(index)
    lengths = np.diff(np.asarray(item_parts(index)[0]))
    over = int((lengths > PGVECTOR_HNSW_MAX_NNZ).sum())
    if over:
        log.warning("Warning: %d items have more than %d non-zeros; pgvector's HNSW index on sparsevec takes at "
                    "most %d (exact search still works)", over, PGVECTOR_HNSW_MAX_NNZ, PGVECTOR_HNSW_MAX_NNZ)

    def line(row, item_id, dims, weights):
        return f"{copy_field(item_id)}\t{sparsevec_text(dims, weights, index.n_dims)}\n"
    summary = _write_lines(index, out, overwrite, PGVECTOR_FILE, "pgvector", line)
    summary["next"] = pgvector_load_command(out, index.item_ids.dtype.kind in "iu", index.n_dims)
    summary["items_over_hnsw_limit"] = over
    return summary


def pgvector_load_command(out: str, integer_ids: bool, n_dims: int) -> str:
    """A shell command creating the table ``items`` and loading the COPY file ``out`` into it through psql."""
    create = (f"CREATE TABLE items (item_id {'bigint' if integer_ids else 'text'} PRIMARY KEY, "
              f"embedding sparsevec({int(n_dims)}))")
    return shlex.join(["psql", "-v", "ON_ERROR_STOP=1", "-c", create, "-c", "COPY items FROM STDIN"]) \
        + " < " + shlex.quote(out)


def write_vespa(index, out: str, overwrite: bool = False, field: str = "embedding",
                namespace: str = "sparseidx", doctype: str = "item") -> dict:
    """Vespa JSONL feed: one put per item with a mapped tensor field ``tensor<float>(d{})``."""
    def line(row, item_id, dims, weights):
        cells = {str(d): float(w) for d, w in zip(dims.tolist(), weights.tolist())}
        return json.dumps({"put": f"id:{namespace}:{doctype}::{item_id}",
                           "fields": {"item_id": item_id, field: cells}}) + "\n"
    return _write_lines(sparse_index(index), out, overwrite, VESPA_FILE, "vespa", line)


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
    summary = _write_lines(index, out, overwrite, ELASTICSEARCH_FILE, "elasticsearch", line)
    summary["negative_weights"] = negative
    return summary
