"""A Feast feature repository holding the item embeddings, ready for ``feast apply``.

Layout of the output directory:

- ``data/items.parquet``: item_id, indices (int32), values (float32), prior, the encoder row
  (encoder_indices, encoder_values) and event_timestamp: a user vector u = sum of the
  encoder rows of the user's items, and scores prior * <u, V_i>, come from the store alone
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

import fnmatch
import numbers
import os
import shlex
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..files import OutputKind, atomic_output
from .parquet import id_column, id_type, list_column
from .rows import csr_parts, factors_of, progress_batches, sparse_index

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

DOCSTRING_START = '"""Item embeddings exported by sparseidx'

# filled in with Python literals only: MODEL by repr(), N_DIMS a checked int, key_type INT64 or STRING
FEATURES_PY = DOCSTRING_START + ''' for Feast: score = prior * <x E, V_i>."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int32

MODEL = {model}
N_DIMS = {n_dims}

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
        Field(name="encoder_indices", dtype=Array(Int32)),
        Field(name="encoder_values", dtype=Array(Float32)),
    ],
    source=item_source,
    online=True,
    description=f"Sparse item embeddings of the model {{MODEL}} over {{N_DIMS}} dimensions: V_i (indices, values), "
                "the prior and the encoder row E_i; u = sum of E_i over a history, score = prior * <u, V_i>.",
)
'''

FEASTIGNORE = "data/\n"

# what sparseidx writes into a repository, and what ``feast apply`` / ``materialize`` add there
REPOSITORY_ENTRIES = ("feature_store.yaml", "features.py", ".feastignore", "data", "data/items.parquet",
                      "data/registry.db", "data/online_store.db", "data/*.db-journal", "data/*.db-wal",
                      "data/*.db-shm", "__pycache__", "__pycache__/features.*.pyc")


def repository_foreign(path: str, entries: tuple[str, ...] = REPOSITORY_ENTRIES) -> str | None:
    """None when ``path`` is a Feast repository sparseidx exported (holding only ``entries``), else why not."""
    try:
        with open(os.path.join(path, "features.py"), encoding="utf-8", errors="replace") as fh:
            ours = fh.read(len(DOCSTRING_START)) == DOCSTRING_START
    except OSError:
        ours = False
    if not ours or not os.path.isfile(os.path.join(path, "feature_store.yaml")):
        return "it has no feature_store.yaml and features.py written by sparseidx"
    strangers = [rel for rel in _entries(path) if not any(fnmatch.fnmatchcase(rel, p) for p in entries)]
    if strangers:
        more = f" (and {len(strangers) - 1} more)" if len(strangers) > 1 else ""
        return f"it holds {strangers[0]!r}{more}, which neither sparseidx nor feast wrote"
    return None


def _entries(path: str) -> list[str]:
    """Paths of everything under ``path``, relative to it, sorted."""
    found = []
    for root, dirs, files in os.walk(path):
        rel = os.path.relpath(root, path)
        found += [os.path.normpath(os.path.join(rel, name)) for name in dirs + files]
    return sorted(found)


REPOSITORY = OutputKind("a Feast repository", True, repository_foreign)


def _n_dims(index) -> int:
    """The index's dimension count, checked to be an integer (it is written into code)."""
    n = index.n_dims
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise DataError(f"the index's dimension count is {n!r}, not an integer; rebuild the index")
    return int(n)


def features_py(index, integer_ids: bool) -> str:
    """The text of features.py: the model name and the dimension count enter it as Python literals only."""
    return FEATURES_PY.format(model=repr(str(index.manifest.get("model"))), n_dims=_n_dims(index),
                              key_type="INT64" if integer_ids else "STRING")


def write_feast(index, out: str, overwrite: bool = False, project: str = "sparseidx") -> dict:
    """Write a Feast repository for the item embeddings into directory ``out`` (atomically)."""
    index = sparse_index(index)
    factors = factors_of(index)
    e_indptr, e_dims, e_weights = csr_parts(factors.encoder)
    id_arrow = id_type(factors.item_ids)
    code = features_py(index, pa.types.is_integer(id_arrow))
    stamp = pa.scalar(datetime.now(timezone.utc).replace(microsecond=0), type=pa.timestamp("us", tz="UTC"))
    schema = pa.schema([pa.field("item_id", id_arrow), pa.field("indices", pa.list_(pa.int32())),
                        pa.field("values", pa.list_(pa.float32())), pa.field("prior", pa.float32()),
                        pa.field("encoder_indices", pa.list_(pa.int32())),
                        pa.field("encoder_values", pa.list_(pa.float32())),
                        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"))])
    with atomic_output(out, REPOSITORY, overwrite) as tmp:
        os.makedirs(os.path.join(tmp, "data"))
        with pq.ParquetWriter(os.path.join(tmp, "data", "items.parquet"), schema) as writer:
            for b in progress_batches(*csr_parts(factors.embeddings), factors.item_ids, "items"):
                n = len(b)
                a, z = e_indptr[b.start], e_indptr[b.start + n]
                rows = e_indptr[b.start: b.start + n + 1] - a
                writer.write_table(pa.table({
                    "item_id": id_column(b.ids, id_arrow), "indices": list_column(b.indptr, b.dims, np.int32),
                    "values": list_column(b.indptr, b.weights, np.float32),
                    "prior": pa.array(np.asarray(factors.priors[b.start: b.start + n], dtype=np.float32)),
                    "encoder_indices": list_column(rows, e_dims[a:z], np.int32),
                    "encoder_values": list_column(rows, e_weights[a:z], np.float32),
                    "event_timestamp": pa.repeat(stamp, n),
                }, schema=schema))
        for name, text in (("feature_store.yaml", FEATURE_STORE_YAML.format(project=project)),
                           ("features.py", code), (".feastignore", FEASTIGNORE)):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                fh.write(text)
    return {"target": "feast", "out": out, "items": index.n_items,
            "next": f"cd {shlex.quote(out)} && feast apply && "
                    "feast materialize-incremental $(date -u +%Y-%m-%dT%H:%M:%S)"}
