"""A Feast feature repository holding the item embeddings, ready for ``feast apply``.

Layout of the output directory:

- ``data/items.parquet``: item_id, indices (int32), values (float32), event_timestamp
- ``feature_store.yaml``: local provider, SQLite online store, file offline store
- ``features.py``: an Entity on item_id, a FileSource and a FeatureView with
  ``Array(Int32)`` / ``Array(Float32)`` fields (never a vector index: Feast has no
  sparse vector search)
- ``.feastignore``: keeps ``feast apply`` from importing anything but features.py

Then: ``cd OUT && feast apply && feast materialize-incremental $(date -u +%FT%T)``
and ``FeatureStore(".").get_online_features(features=["item_embeddings:indices",
"item_embeddings:values"], entity_rows=[{"item_id": ...}])``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_output
from .parquet import list_column
from .rows import item_parts, progress_batches, sparse_index

FEATURE_STORE_YAML = """\
project: {project}
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

FEATURES_PY = '''\
"""Item embeddings exported by sparseidx ({model}, {n_dims} dimensions): score = prior * <x E, V_i>."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int32

item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.{key_type})

item_source = FileSource(
    name="item_embeddings_source",
    path="data/items.parquet",
    timestamp_field="event_timestamp",
)

item_embeddings = FeatureView(
    name="item_embeddings",
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="indices", dtype=Array(Int32)),
        Field(name="values", dtype=Array(Float32)),
        Field(name="prior", dtype=Float32),
    ],
    source=item_source,
    online=True,
    description="Sparse item embeddings: indices into {n_dims} dimensions and their values.",
)
'''

FEASTIGNORE = "data/\n"


def write_feast(index, out: str, overwrite: bool = False, project: str = "sparseidx") -> dict:
    """Write a Feast repository for the item embeddings into directory ``out`` (atomically)."""
    index = sparse_index(index)
    key_type = "INT64" if index.item_ids.dtype.kind in "iu" else "STRING"
    stamp = pa.scalar(datetime.now(timezone.utc).replace(microsecond=0), type=pa.timestamp("us", tz="UTC"))
    id_type = pa.int64() if key_type == "INT64" else pa.string()
    schema = pa.schema([pa.field("item_id", id_type), pa.field("indices", pa.list_(pa.int32())),
                        pa.field("values", pa.list_(pa.float32())), pa.field("prior", pa.float32()),
                        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"))])
    with atomic_output(out, overwrite, directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "data"))
        with pq.ParquetWriter(os.path.join(tmp, "data", "items.parquet"), schema) as writer:
            for b in progress_batches(*item_parts(index), index.item_ids, "items"):
                n = len(b)
                ids = b.ids.astype(np.int64) if key_type == "INT64" else b.ids.astype(str)
                writer.write_table(pa.table({
                    "item_id": pa.array(ids, type=id_type), "indices": list_column(b.indptr, b.dims, np.int32),
                    "values": list_column(b.indptr, b.weights, np.float32),
                    "prior": pa.array(np.asarray(index.priors[b.start: b.start + n], dtype=np.float32)),
                    "event_timestamp": pa.array([stamp.as_py()] * n, type=schema.field("event_timestamp").type),
                }, schema=schema))
        with open(os.path.join(tmp, "feature_store.yaml"), "w") as fh:
            fh.write(FEATURE_STORE_YAML.format(project=project))
        with open(os.path.join(tmp, "features.py"), "w") as fh:
            fh.write(FEATURES_PY.format(model=index.manifest.get("model"), n_dims=index.n_dims, key_type=key_type))
        with open(os.path.join(tmp, ".feastignore"), "w") as fh:
            fh.write(FEASTIGNORE)
    return {"target": "feast", "out": out, "items": index.n_items,
            "next": f"cd {out} && feast apply && feast materialize-incremental $(date -u +%Y-%m-%dT%H:%M:%S)"}
