"""Batch recommendations: top-k items for every user of a histories file, written as one Parquet file."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .data import load_interactions
from .errors import DataError
from .export.parquet import META_KEY, parquet_kind
from .files import atomic_output, check_output
from .progress import log

RESULTS_FILE = parquet_kind("recommendations", "a recommendations Parquet file")


def recommend_file(index, histories: str, out: str, k: int = 20, overwrite: bool = False,
                   skip_unknown: bool = False, **options) -> dict:
    """Write the top-k items of every user in the ``histories`` file to the Parquet file ``out``.

    Columns: user_id, item_ids, scores (lists, best first) and popular (answered by
    popularity for an empty history). Returns a summary.
    """
    check_output(out, RESULTS_FILE, overwrite)
    if os.path.exists(out) and os.path.exists(histories) and os.path.samefile(out, histories):
        raise DataError(f"{out} is the histories file itself; write the results to another file")
    inter = load_interactions(histories, item_ids=index.item_ids, skip_unknown=skip_unknown)
    if getattr(inter, "dropped", 0):
        log.warning("Warning: skipped %d interactions with item ids unknown to the index", inter.dropped)
    res = index.search_detailed(inter.X, k, **options)
    valid = res.ids >= 0  # rows are padded with -1 only when fewer than k items remain
    offsets = np.zeros(len(valid) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    meta = {"kind": "recommendations", "k": int(k), "model": index.manifest.get("model"),
            "index_build_id": index.manifest.get("build_id")}
    table = pa.table({
        "user_id": pa.array(inter.user_ids),
        "item_ids": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(index.item_ids[res.ids[valid]])),
        "scores": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(res.scores[valid])),
        "popular": pa.array(res.popular),
    }).replace_schema_metadata({META_KEY: json.dumps(meta)})
    with atomic_output(out, RESULTS_FILE, overwrite) as tmp:
        pq.write_table(table, tmp)
    return {"out": out, "users": int(inter.n_users), "k": int(k), "popular": int(res.popular.sum()),
            "postings_per_query": float(res.postings.mean()) if len(res.postings) else 0.0}
