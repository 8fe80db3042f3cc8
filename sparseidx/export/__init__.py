"""Exports of an index's embeddings to the formats feature stores and vector stores take."""

from __future__ import annotations

from ..errors import DataError
from ..files import check_output

TARGETS = ("parquet", "feast", "milvus", "qdrant", "pgvector", "vespa", "elasticsearch")


def export(index, target: str, out: str, overwrite: bool = False, users: str | None = None,
           split_signs: bool = False) -> dict:
    """Write the item embeddings of ``index`` to ``out`` in the ``target`` format; returns a summary.

    ``users`` (parquet only): a histories file whose user embeddings u = x E are
    written next to the items, to ``<out stem>.users.parquet``. ``split_signs``
    (elasticsearch only): split negative weights into a second field. Every output is
    checked before any work; a failed export leaves nothing new behind.
    """
    from . import feast, parquet, stores

    if target not in TARGETS:
        raise DataError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    if users is not None and target != "parquet":
        raise DataError("user embeddings (--users) are exported to Parquet only (--to parquet)")
    if split_signs and target != "elasticsearch":
        raise DataError("--split-signs applies to --to elasticsearch only")
    kind, write = {"parquet": (parquet.ITEMS_FILE, parquet.write_parquet),
                   "feast": (feast.REPOSITORY, feast.write_feast),
                   "milvus": (stores.MILVUS_FILE, stores.write_milvus),
                   "qdrant": (stores.QDRANT_FILE, stores.write_qdrant),
                   "pgvector": (stores.PGVECTOR_FILE, stores.write_pgvector),
                   "vespa": (stores.VESPA_FILE, stores.write_vespa),
                   "elasticsearch": (stores.ELASTICSEARCH_FILE, stores.write_elasticsearch)}[target]
    check_output(out, kind, overwrite)
    if users is not None:
        check_output(parquet.users_path(out), parquet.USERS_FILE, overwrite)
        return write(index, out, overwrite, users=users)
    if split_signs:
        return write(index, out, overwrite, split_signs=True)
    return write(index, out, overwrite)
