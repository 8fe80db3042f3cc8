"""Exports of an index's embeddings to the formats feature stores and vector stores take."""

from __future__ import annotations

from ..errors import DataError

TARGETS = ("parquet", "feast", "milvus", "qdrant", "pgvector", "vespa", "elasticsearch")


def export(index, target: str, out: str, overwrite: bool = False, users: str | None = None,
           split_signs: bool = False) -> dict:
    """Write the item embeddings of ``index`` to ``out`` in the ``target`` format; returns a summary.

    ``users`` (parquet only): a histories file whose user embeddings u = x E are
    written next to the items, to ``<out stem>.users.parquet``. ``split_signs``
    (elasticsearch only): split negative weights into a second field.
    """
    from . import feast, parquet, stores

    if target not in TARGETS:
        raise DataError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    if users is not None and target != "parquet":
        raise DataError("user embeddings (--users) are exported to Parquet only (--to parquet)")
    if split_signs and target != "elasticsearch":
        raise DataError("--split-signs applies to --to elasticsearch only")
    if target == "parquet":
        summary = parquet.write_items(index, out, overwrite)
        if users is not None:
            stem = out[: -len(".parquet")] if out.endswith(".parquet") else out
            summary["users"] = parquet.write_users(index, users, stem + ".users.parquet", overwrite)
        return summary
    if target == "feast":
        return feast.write_feast(index, out, overwrite)
    if target == "elasticsearch":
        return stores.write_elasticsearch(index, out, overwrite, split_signs=split_signs)
    writer = {"milvus": stores.write_milvus, "qdrant": stores.write_qdrant, "pgvector": stores.write_pgvector,
              "vespa": stores.write_vespa}[target]
    return writer(index, out, overwrite)
