"""``sparseidx segments``: item segments from the dominant latent dimensions of a sparse index."""

from __future__ import annotations

import click

from sparseidx.index import Index
from sparseidx.segments import item_segments, read_merges, read_titles

from .common import IndexPath, echo_json, echo_table

merges_option = click.option(
    "--merges", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Merge dimension groups into named segments: 'name<TAB>+12 -305 ...' lines (signed dimensions).")


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--titles", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Name segments from 'item_id<TAB>title' lines instead of item ids.")
@merges_option
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the largest N segments.")
@click.option("--json", "as_json", is_flag=True, help="Print segments as JSON.")
def segments(index, titles, merges, top, as_json):
    """List item segments of a Compressed ELSA index: each item belongs to its dominant (signed)
    latent dimension; --merges joins such groups into named segments (the paper merges groups
    whose generated names are alike). Indexes with one dimension per item are refused.

    Segments without a merge name are named after their most popular members (or --titles).
    Rank them for a user with 'sparseidx query INDEX --history ... --segments N'.

    \b
    Examples:
      sparseidx segments celsa.idx --top 20
      sparseidx segments celsa.idx --titles titles.tsv --json
      sparseidx segments celsa.idx --merges merges.tsv
    """
    segs = item_segments(Index.open(index), read_titles(titles) if titles else None,
                         read_merges(merges) if merges else None)
    rows = [{"segment": s, "dims": " ".join(segs.signed_dims(s)), "size": int(segs.sizes[s]), "name": segs.names[s]}
            for s in range(len(segs.sizes))]
    rows.sort(key=lambda r: -r["size"])
    rows = rows[:top] if top else rows
    if as_json:
        echo_json({"segments": rows, "n_segments": len(segs.sizes), "n_items": int(segs.sizes.sum())})
    else:
        echo_table(rows)
