"""``sparseidx query``: top-k items for one history, or for a file of histories."""

from __future__ import annotations

import os

import click

from sparseidx.batch import recommend_file
from sparseidx.index import Index

from .common import (IndexPath, echo_json, echo_table, filter_options, index_options, info, read_filters,
                     search_options)
from .segments import merges_option


@click.command()
@click.argument("index", type=IndexPath())
@click.argument("items", nargs=-1)
@click.option("--history", is_flag=True, help="The ITEMS that follow INDEX are one user's history.")
@click.option("--users", type=click.Path(exists=True), default=None,
              help="Batch: a file of histories (same formats as build's INTERACTIONS); with --scheduler, also a "
                   "directory of such files, one partition each.")
@click.option("--out", type=click.Path(), default=None,
              help="Batch: Parquet file for the results (user_id, item_ids, scores, popular); with --scheduler, "
                   "a directory of such files.")
@click.option("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
              help="Batch on Dask: N local worker processes, or a running dask scheduler (needs sparseidx[dask]; "
                   "see docs/distributed.md).")
@click.option("--overwrite", is_flag=True,
              help="Batch: replace --out if it is a recommendations file sparseidx wrote.")
@click.option("-k", "k", type=click.IntRange(min=1), default=20, show_default=True, help="Items to return.")
@search_options
@filter_options
@click.option("--skip-unknown", is_flag=True,
              help="Drop item ids the index does not know, with a warning, instead of failing.")
@click.option("--segments", "n_segments", type=click.IntRange(min=1), default=None,
              help="Instead of one list: the user's top N item segments (dominant dimensions) and the top k "
                   "items in each.")
@merges_option
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def query(index, items, history, users, out, overwrite, scheduler, k, skip_unknown, n_segments, merges, as_json,
          exclude_items, allow_items, **search):
    """Recommend items for a history, or for every user in --users.

    \b
    Examples:
      sparseidx query book.idx --history 17 42 99 -k 10
      sparseidx query book.idx --history 17 42 --query-dims 300 --json
      sparseidx query book.idx --users test_histories.txt --out recs.parquet -k 100
      sparseidx query book.idx --users histories/ --out recs/ --scheduler local:2
      sparseidx query celsa.idx --history 17 42 --segments 5 -k 3 [--merges merges.tsv]
      sparseidx query book.idx --history 17 42 --exclude-items out_of_stock.txt
      sparseidx query book.idx --history 17 42 --allow-items category_7.txt -k 5
    A history with no items returns the most popular items, flagged as such.
    Item ids are separated by spaces or commas; for ids that contain either, put the
    history in a file ('user item item ...' lines, or CSV/Parquet) and use --users.
    """
    if users and (items or history):
        raise click.UsageError("give either --history ITEM... or --users FILE, not both")
    if not users and not history:
        raise click.UsageError("give --history ITEM [ITEM ...] for one user, or --users FILE with --out for a batch")
    if users and not out:
        raise click.UsageError("--users needs --out RESULTS.parquet")
    if out and not users:
        raise click.UsageError("--out applies to a batch (--users FILE)")
    if scheduler and not users:
        raise click.UsageError("--scheduler runs a batch: give --users HISTORIES and --out DIR")
    if users and not scheduler and os.path.isdir(users):
        raise click.UsageError(f"--users {users} is a directory: a dataset of histories files runs with --scheduler")
    if merges and not n_segments:
        raise click.UsageError("--merges applies to --segments N")
    if n_segments and (exclude_items or allow_items):
        raise click.UsageError("--segments does not take --exclude-items / --allow-items")
    idx = Index.open(index)
    options = index_options(idx, search)
    filters = read_filters(exclude_items, allow_items)
    if users:
        _batch(idx, index, users, out, k, options, skip_unknown, overwrite, as_json, filters, scheduler)
        return
    if n_segments:
        _segments(idx, [t for item in items for t in item.split(",") if t], n_segments, k, merges, as_json)
        return
    tokens = [t for item in items for t in item.split(",") if t]
    res = idx.search_detailed([tokens], k, options, skip_unknown=skip_unknown, **filters)
    valid = res.ids[0] >= 0
    ids = idx.item_ids[res.ids[0][valid]]
    scores = res.scores[0][valid]
    payload = {"history": _typed(tokens, idx.item_ids), "popular": bool(res.popular[0]),
               "items": [{"rank": r + 1, "item_id": i, "score": float(s)} for r, (i, s) in enumerate(zip(ids, scores))],
               "postings": int(res.postings[0])}
    if as_json:
        echo_json(payload)
        return
    if res.popular[0]:
        info("empty history: showing the most popular items (score = interaction count)")
    echo_table(payload["items"], ["rank", "item_id", "score"])


def _typed(tokens: list[str], item_ids) -> list:
    """History tokens as the index's ids are typed (integers for an integer catalogue), for --json."""
    if item_ids.dtype.kind not in "iu":
        return tokens
    return [int(t) if t.lstrip("+-").isdigit() else t for t in tokens]


def _batch(idx, index, users_path, out, k, options, skip_unknown, overwrite, as_json, filters, scheduler):
    if scheduler:
        from sparseidx.distributed import recommend

        summary = recommend(index, users_path, out, k, scheduler, overwrite=overwrite, skip_unknown=skip_unknown,
                            options=options, **filters)
    else:
        summary = recommend_file(idx, users_path, out, k, overwrite=overwrite, skip_unknown=skip_unknown,
                                 options=options, **filters)
    if as_json:
        echo_json(summary)
    else:
        info(f"wrote top-{summary['k']} for {summary['users']:,} users to {out}")


def _segments(idx, tokens, n_segments, k, merges, as_json):
    from sparseidx.segments import item_segments, rank_segments, read_merges

    ranked = rank_segments(idx, item_segments(idx, merges=read_merges(merges) if merges else None), tokens,
                           n_segments, k)
    if as_json:
        echo_json({"history": tokens, "segments": ranked})
        return
    for seg in ranked:
        click.echo(f"segment {seg['segment']} (dims {' '.join(seg['dims'])}, "
                   f"{seg['size']} items: {seg['name']})  score {seg['score']:.4g}")
        echo_table([{"rank": r + 1, "item_id": it["item_id"], "score": it["score"]}
                    for r, it in enumerate(seg["items"])])
