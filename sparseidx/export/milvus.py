"""Milvus: Parquet rows for a collection whose search ranks exactly like sparseidx, or a refusal.

Milvus refuses negative weights in SPARSE_FLOAT_VECTOR data and queries, and its hybrid
rankers merge per-route top-k lists (not exact). So:

- non-negative item vectors and encoder: a SPARSE_FLOAT_VECTOR column ``embedding``
  (``struct<indices: list<uint32>, values: list<float32>>``), inner product, plus the presence
  dimension n_dims (value 1; see ``stores``): Milvus refuses empty vectors, and a query adding
  it with a tiny weight reaches items sharing no dimension with u;
- signed weights over at most 32,768 dimensions (Milvus's FLOAT_VECTOR limit): a dense
  FLOAT_VECTOR column (``list<float32>``), FLAT index, inner product (exact, signs kept);
- otherwise a DataError naming the targets that take signed weights.

The ``.milvus.json`` companion holds the collection fields, index and search parameters;
``load_milvus`` inserts the file through pymilvus (Milvus Lite and the server; a server can
also bulk-import the Parquet file), ``milvus_query`` turns u into the search vector.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..progress import log
from .companions import written_together, write_json
from .parquet import id_column, id_type, list_column, metadata
from .rows import same_matrix
from .stores import MILVUS_FILE, PRESENCE_WEIGHT, companions, summary

MILVUS_MAX_DIM = 32768
MILVUS_MAX_VARCHAR = 65535
INSERT_BATCH = 1000
DENSE_CELLS = 1 << 22  # float32 cells per dense chunk (16 MiB)


def milvus_mode(vectors) -> str:
    """"sparse" or "dense": the vector field that ranks exactly; a DataError when neither can."""
    if not vectors.signed():
        return "sparse"
    if vectors.n_dims <= MILVUS_MAX_DIM:
        return "dense"
    raise DataError(f"Milvus cannot rank these embeddings exactly: it refuses negative sparse weights (in data and "
                    f"queries) and {vectors.n_dims:,} dimensions exceed its dense FLOAT_VECTOR limit of "
                    f"{MILVUS_MAX_DIM:,}; export --to qdrant, pgvector or vespa instead (they take signed weights)")


def collection_fields(vectors, mode: str) -> list[dict]:
    """The collection's fields as pymilvus FieldSchema keyword arguments (``datatype`` by DataType name)."""
    ids = vectors.item_ids
    if ids.dtype.kind in "iu":
        item = {"field_name": "item_id", "datatype": "INT64"}
    else:
        longest = max((len(str(i).encode("utf-8")) for i in ids.tolist()), default=1)
        if longest > MILVUS_MAX_VARCHAR:
            raise DataError(f"an item id is {longest:,} bytes long; Milvus VARCHAR takes at most "
                            f"{MILVUS_MAX_VARCHAR:,}")
        item = {"field_name": "item_id", "datatype": "VARCHAR", "max_length": max(longest, 1)}
    vector = {"field_name": "embedding", "datatype": "SPARSE_FLOAT_VECTOR"} if mode == "sparse" else \
        {"field_name": "embedding", "datatype": "FLOAT_VECTOR", "dim": vectors.n_dims}
    return [{"field_name": "id", "datatype": "INT64", "is_primary": True}, item, vector]


def write_milvus(index, vectors, out: str, overwrite: bool = False) -> dict:
    """Parquet for Milvus (id, item_id, embedding) and the ``.milvus.json`` guide; refuses what Milvus misranks."""
    mode = milvus_mode(vectors)
    if mode == "dense":
        log.warning("Warning: Milvus takes signed weights only as a dense FLOAT_VECTOR: %s x %s float32 cells "
                    "(%.1f GB before compression)", f"{len(vectors.item_ids):,}", f"{vectors.n_dims:,}",
                    len(vectors.item_ids) * vectors.n_dims * 4 / 1e9)
    ids = id_type(vectors.item_ids)
    if mode == "sparse":
        vec_type = pa.struct([pa.field("indices", pa.list_(pa.uint32())), pa.field("values", pa.list_(pa.float32()))])
    else:
        vec_type = pa.list_(pa.float32())
    presence = {"presence_dimension": vectors.n_dims, "presence_query_weight": PRESENCE_WEIGHT} \
        if mode == "sparse" else {}
    desc = vectors.describe(index, "milvus", vector_field=mode, **presence)
    shared = same_matrix(vectors.factors.encoder, vectors.factors.embeddings)
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("item_id", ids), pa.field("embedding", vec_type)],
                       metadata=metadata(index, "milvus", shared, priors=desc["priors"], vector_field=mode))
    guide = {"sparseidx": desc, "fields": collection_fields(vectors, mode),
             "index": {"field_name": "embedding", "metric_type": "IP",
                       "index_type": "SPARSE_INVERTED_INDEX" if mode == "sparse" else "FLAT"},
             "search": {"anns_field": "embedding", "search_params": {"metric_type": "IP"}, "limit": 20},
             "query": "u = x E as {dim: value} plus {presence_dimension: presence_query_weight} (sparse), "
                      "or a list of n_dims floats (dense)"}
    outputs = [(out, MILVUS_FILE)] + companions("milvus", out)
    with written_together(outputs, overwrite) as (tmp, guide_tmp), pq.ParquetWriter(tmp, schema) as writer:
        for b in vectors.batches():
            for lo, hi, vec in _vector_chunks(b, mode, vec_type, vectors.n_dims):
                writer.write_table(pa.table({"id": pa.array(np.arange(b.start + lo, b.start + hi, dtype=np.int64)),
                                             "item_id": id_column(b.ids[lo:hi], ids), "embedding": vec}, schema=schema))
        write_json(guide_tmp, guide)
    return summary("milvus", out, vectors, [p for p, _ in outputs[1:]], vector_field=mode)


def _vector_chunks(b, mode: str, vec_type, n_dims: int):
    """(first row, end row, vector column) of a row batch; dense rows in chunks of at most DENSE_CELLS cells."""
    if mode == "sparse":
        indptr, dims, weights = with_presence(b, n_dims)
        yield 0, len(b), pa.StructArray.from_arrays([list_column(indptr, dims, np.uint32),
                                                     list_column(indptr, weights, np.float32)], fields=list(vec_type))
        return
    step = max(1, DENSE_CELLS // n_dims)
    for lo in range(0, len(b), step):
        hi = min(lo + step, len(b))
        a, z = b.indptr[lo], b.indptr[hi]
        dense = np.zeros((hi - lo, n_dims), dtype=np.float32)
        dense[np.repeat(np.arange(hi - lo), np.diff(b.indptr[lo: hi + 1])), b.dims[a:z]] = b.weights[a:z]
        yield lo, hi, pa.FixedSizeListArray.from_arrays(dense.ravel(), n_dims).cast(vec_type)


def with_presence(b, presence: int):
    """CSR parts of a row batch with the presence dimension (value 1) appended to every row."""
    n = np.diff(b.indptr)
    indptr = b.indptr + np.arange(len(n) + 1)
    at = indptr[1:] - 1  # each row's last slot
    dims = np.empty(indptr[-1], dtype=np.int64)
    weights = np.empty(indptr[-1], dtype=np.float32)
    keep = np.ones(indptr[-1], dtype=bool)
    keep[at] = False
    dims[keep], weights[keep] = b.dims, b.weights
    dims[at], weights[at] = presence, 1.0
    return indptr, dims, weights


def load_milvus(client, parquet: str, guide: str, collection: str = "items") -> None:
    """Create ``collection`` as the guide says and insert the Parquet rows through pymilvus ``client``."""
    from pymilvus import DataType

    with open(guide, encoding="utf-8") as fh:
        spec = json.load(fh)
    schema = client.create_schema(auto_id=False)
    for field in spec["fields"]:
        schema.add_field(**{**field, "datatype": DataType[field["datatype"]]})
    params = client.prepare_index_params()
    params.add_index(**spec["index"])
    client.create_collection(collection, schema=schema, index_params=params)
    sparse = spec["sparseidx"]["vector_field"] == "sparse"
    rows_per_batch = INSERT_BATCH if sparse else max(1, DENSE_CELLS // spec["sparseidx"]["n_dims"])
    for batch in pq.ParquetFile(parquet).iter_batches(rows_per_batch):
        rows = batch.to_pylist()
        for row in rows:
            if sparse:
                row["embedding"] = dict(zip(row["embedding"]["indices"], row["embedding"]["values"]))
        client.insert(collection, rows)


def milvus_query(guide: dict, dims, values, n_dims: int):
    """The search vector for a user vector u given by ``dims`` and ``values``, for the guide's field."""
    meta = guide["sparseidx"]
    if meta["vector_field"] == "sparse":
        return {**{int(d): float(v) for d, v in zip(dims, values)},
                meta["presence_dimension"]: meta["presence_query_weight"]}
    dense = np.zeros(n_dims, dtype=np.float32)
    dense[np.asarray(dims, dtype=np.int64)] = values
    return dense.tolist()
