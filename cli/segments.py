"""``sparseidx segments``: item segments from the dominant dimensions of a sparse index."""

from __future__ import annotations

import click

from sparseidx.index import Index
from sparseidx.segments import item_segments, read_titles

from .common import IndexPath, echo_json, echo_table


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--titles", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Name segments from 'item_id<TAB>title' lines instead of item ids.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the largest N segments.")
@click.option("--json", "as_json", is_flag=True, help="Print segments as JSON.")
def segments(index, titles, top, as_json):
    """List item segments: each item belongs to its dominant (signed) embedding dimension.

    Segments are named after their most popular members (or --titles). Rank them for a
    user with 'sparseidx query INDEX --history ... --segments N'.

    \b
    Examples:
      sparseidx segments celsa.idx --top 20
      sparseidx segments celsa.idx --titles titles.tsv --json
    """
    segs = item_segments(Index.open(index), read_titles(titles) if titles else None)
    rows = [{"segment": s, "dim": int(segs.dim[s]), "sign": int(segs.sign[s]), "size": int(segs.sizes[s]),
             "name": segs.names[s]} for s in range(len(segs.sizes))]
    rows.sort(key=lambda r: -r["size"])
    rows = rows[:top] if top else rows
    if as_json:
        echo_json({"segments": rows, "n_segments": len(segs.sizes), "n_items": int(segs.sizes.sum())})
    else:
        echo_table(rows)
