"""Exports of an index's embeddings to the formats feature stores and vector stores take.

Store targets (milvus, qdrant, pgvector, vespa, elasticsearch) write the item vectors with
the priors folded in (see ``vectors``) and, beside them, the companion files the store needs
(schema, mapping, query), so that the store's answer to u = x E is sparseidx's top-k. A
store that cannot compute that exactly for an index is refused with a one-line error.
"""

from __future__ import annotations

from ..errors import DataError
from ..files import check_output

TARGETS = ("parquet", "feast", "milvus", "qdrant", "pgvector", "vespa", "elasticsearch")
STORES = ("milvus", "qdrant", "pgvector", "vespa", "elasticsearch")


def export(index, target: str, out: str, overwrite: bool = False, users: str | None = None,
           fold_priors: bool = True) -> dict:
    """Write the item embeddings of ``index`` to ``out`` in the ``target`` format; returns a summary.

    ``users`` (parquet only): a histories file whose user embeddings u = x E are
    written next to the items, to ``<out stem>.users.parquet``. ``fold_priors`` (store
    targets): store prior_i * V_i, so the store ranks like sparseidx. Every output is
    checked before any work; a failed export leaves nothing new behind.
    """
    from . import elastic, feast, milvus, parquet, stores, vespa
    from .companions import check_all
    from .rows import sparse_index
    from .vectors import store_vectors

    if target not in TARGETS:
        raise DataError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    if users is not None and target != "parquet":
        raise DataError("user embeddings (--users) are exported to Parquet only (--to parquet)")
    if not fold_priors and target not in STORES:
        raise DataError(f"--no-fold-priors applies to the store targets ({', '.join(STORES)}); "
                        f"{target} keeps the prior in a column of its own")
    if target == "parquet":
        check_output(out, parquet.ITEMS_FILE, overwrite)
        if users is not None:
            check_output(parquet.users_path(out), parquet.USERS_FILE, overwrite)
        return parquet.write_parquet(index, out, overwrite, users=users)
    if target == "feast":
        check_output(out, feast.REPOSITORY, overwrite)
        return feast.write_feast(index, out, overwrite)
    kind, write = {"milvus": (stores.MILVUS_FILE, milvus.write_milvus),
                   "qdrant": (stores.QDRANT_FILE, stores.write_qdrant),
                   "pgvector": (stores.PGVECTOR_FILE, stores.write_pgvector),
                   "vespa": (stores.VESPA_FILE, vespa.write_vespa),
                   "elasticsearch": (stores.ELASTICSEARCH_FILE, elastic.write_elasticsearch)}[target]
    check_all([(out, kind)] + stores.companions(target, out), overwrite)
    index = sparse_index(index)
    return write(index, store_vectors(index, fold_priors), out, overwrite)
