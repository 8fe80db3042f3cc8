"""Batch recommendations: top-k items for every user of a histories file, written as one Parquet file."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .data import apart_error, iter_interactions
from .errors import DataError
from .export.parquet import META_KEY, parquet_kind
from .files import atomic_output, check_output
from .progress import counter, log
from .user_keys import keys, named_twice, repeated

CHUNK = 4 << 20  # bytes of a lines file answered at a time (peak memory grows about 40x this)

RESULTS_FILE = parquet_kind("recommendations", "a recommendations Parquet file")


def recommend_file(index, histories: str, out: str, k: int = 20, overwrite: bool = False,
                   skip_unknown: bool = False, options=None, *, exclude=None, allow=None, chunk_bytes: int = CHUNK,
                   **knobs) -> dict:
    """Write the top-k items of every user in the ``histories`` file to the Parquet file ``out``.

    Columns: user_id, item_ids, scores (lists, best first) and popular (answered by
    popularity for an empty history). ``options``/``knobs`` and the filters
    ``exclude``/``allow`` (flat lists of item ids, for every user) go to the search.
    A lines file is read and answered in blocks of about ``chunk_bytes``, one row group
    each, so memory stays bounded whatever the number of users; consecutive lines of one
    user stay in one block. A user whose lines are apart would be answered once per place
    from part of its history: such a file is refused. Returns a summary.
    """
    options = index.options(options, **knobs)
    check_output(out, RESULTS_FILE, overwrite)
    if os.path.exists(out) and os.path.exists(histories) and os.path.samefile(out, histories):
        raise DataError(f"{out} is the histories file itself; write the results to another file")
    meta = json.dumps({"kind": "recommendations", "k": int(k), "model": index.manifest.get("model"),
                       "index_build_id": index.manifest.get("build_id")})
    users = popular = dropped = 0
    postings = 0.0
    answered = []  # a key per user of every block
    with atomic_output(out, RESULTS_FILE, overwrite) as tmp, counter(os.path.getsize(histories),
                                                                      "recommending (bytes read)") as progress:
        writer, done = None, 0
        try:
            for part, read in iter_interactions(histories, index.item_ids, skip_unknown, chunk_bytes):
                res = index.search_detailed(part.X, k, options, exclude=exclude, allow=allow)
                table = _results(index, part.user_ids, res).replace_schema_metadata({META_KEY: meta})
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                answered.append(keys(part.user_ids))
                users += part.n_users
                popular += int(res.popular.sum())
                dropped += getattr(part, "dropped", 0)
                postings += float(res.postings.sum())
                progress.update(read - done)
                done = read
        finally:
            if writer is not None:
                writer.close()
        twice = repeated(answered)
        if len(twice) and (ids := named_twice(answered_users(tmp), twice)):
            raise apart_error(histories, ids[0])
    if dropped:
        log.warning("Warning: skipped %d interactions with item ids unknown to the index", dropped)
    return {"out": out, "users": int(users), "k": int(k), "popular": int(popular),
            "postings_per_query": postings / users if users else 0.0}


def answered_users(path: str) -> np.ndarray:
    """The user ids of a recommendations Parquet file, in its order."""
    return pq.read_table(path, columns=["user_id"])["user_id"].to_numpy()


def _results(index, user_ids: np.ndarray, res) -> pa.Table:
    """The answers of one block of users as a table: user_id, item_ids, scores, popular."""
    valid = res.ids >= 0  # rows are padded with -1 only when fewer than k items remain
    offsets = np.zeros(len(valid) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    return pa.table({
        "user_id": pa.array(user_ids),
        "item_ids": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(index.item_ids[res.ids[valid]])),
        "scores": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(res.scores[valid])),
        "popular": pa.array(res.popular),
    })
