"""``sparseidx query``: top-k items for one history, or for a file of histories."""

from __future__ import annotations

import os
import tempfile

import click
import numpy as np

from sparseidx.data import load_interactions
from sparseidx.index import Index

from .common import echo_json, echo_table, info, search_kwargs, search_options


@click.command()
@click.argument("index", type=click.Path(exists=True, file_okay=False))
@click.argument("items", nargs=-1)
@click.option("--history", is_flag=True, help="The ITEMS that follow INDEX are one user's history.")
@click.option("--users", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Batch: a file of histories (same formats as build's INTERACTIONS).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Batch: Parquet file for the results (user_id, item_ids, scores, popular).")
@click.option("-k", "k", type=click.IntRange(min=1), default=20, show_default=True, help="Items to return.")
@search_options
@click.option("--skip-unknown", is_flag=True,
              help="Drop item ids the index does not know, with a warning, instead of failing.")
@click.option("--segments", "n_segments", type=click.IntRange(min=1), default=None,
              help="Instead of one list: the user's top N item segments (dominant dimensions) and the top k "
                   "items in each.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def query(index, items, history, users, out, k, skip_unknown, n_segments, as_json, **search):
    """Recommend items for a history, or for every user in --users.

    \b
    Examples:
      sparseidx query book.idx --history 17 42 99 -k 10
      sparseidx query book.idx --history 17 42 --query-dims 300 --json
      sparseidx query book.idx --users test_histories.txt --out recs.parquet -k 100
      sparseidx query celsa.idx --history 17 42 --segments 5 -k 3
    A history with no items returns the most popular items, flagged as such.
    """
    if users and (items or history):
        raise click.UsageError("give either --history ITEM... or --users FILE, not both")
    if not users and not history:
        raise click.UsageError("give --history ITEM [ITEM ...] for one user, or --users FILE with --out for a batch")
    if users and not out:
        raise click.UsageError("--users needs --out RESULTS.parquet")
    idx = Index.open(index)
    options = search_kwargs(**search)
    if users:
        _batch(idx, users, out, k, options, skip_unknown, as_json)
        return
    if n_segments:
        _segments(idx, [t for item in items for t in item.split(",") if t], n_segments, k, as_json)
        return
    tokens = [t for item in items for t in item.split(",") if t]
    res = idx.search_detailed([tokens], k, skip_unknown=skip_unknown, **options)
    valid = res.ids[0] >= 0
    ids = idx.item_ids[res.ids[0][valid]]
    scores = res.scores[0][valid]
    payload = {"history": tokens, "popular": bool(res.popular[0]),
               "items": [{"rank": r + 1, "item_id": i, "score": float(s)} for r, (i, s) in enumerate(zip(ids, scores))],
               "postings": int(res.postings[0])}
    if as_json:
        echo_json(payload)
        return
    if res.popular[0]:
        info("empty history: showing the most popular items (score = interaction count)")
    echo_table(payload["items"], ["rank", "item_id", "score"])


def _batch(idx, users_path, out, k, options, skip_unknown, as_json):
    import pyarrow as pa
    import pyarrow.parquet as pq

    inter = load_interactions(users_path, item_ids=idx.item_ids, skip_unknown=skip_unknown)
    if getattr(inter, "dropped", 0):
        info(f"Warning: skipped {inter.dropped} interactions with item ids unknown to the index")
    res = idx.search_detailed(inter.X, k, **options)
    valid = res.ids >= 0  # rows are padded with -1 only when fewer than k items remain
    offsets = np.zeros(len(valid) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    table = pa.table({
        "user_id": pa.array(inter.user_ids),
        "item_ids": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(idx.item_ids[res.ids[valid]])),
        "scores": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(res.scores[valid])),
        "popular": pa.array(res.popular),
    })
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".parquet", dir=directory)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    summary = {"out": out, "users": int(inter.n_users), "k": k, "popular": int(res.popular.sum()),
               "postings_per_query": float(res.postings.mean()) if len(res.postings) else 0.0}
    if as_json:
        echo_json(summary)
    else:
        info(f"wrote top-{k} for {summary['users']:,} users to {out}")



def _segments(idx, tokens, n_segments, k, as_json):
    from sparseidx.segments import item_segments, rank_segments

    ranked = rank_segments(idx, item_segments(idx), tokens, n_segments, k)
    if as_json:
        echo_json({"history": tokens, "segments": ranked})
        return
    for seg in ranked:
        click.echo(f"segment {seg['segment']} (dim {seg['dim']}{'+' if seg['sign'] > 0 else '-'}, "
                   f"{seg['size']} items: {seg['name']})  score {seg['score']:.4g}")
        echo_table([{"rank": r + 1, "item_id": it["item_id"], "score": it["score"]}
                    for r, it in enumerate(seg["items"])])
