"""``sparseidx deny``: set or clear an index's persistent deny list (items never returned)."""

from __future__ import annotations

import click

from sparseidx.data import read_id_list
from sparseidx.index.deny import set_denied

from .common import IndexPath, echo_json, info


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--items", "items_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of item ids (one a line) that no answer may contain; replaces the current list.")
@click.option("--clear", is_flag=True, help="Remove the deny list.")
@click.option("--skip-unknown", is_flag=True,
              help="Drop item ids the index does not know, with a warning, instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def deny(index, items_file, clear, skip_unknown, as_json):
    """Remove items from every answer of INDEX, without a rebuild.

    \b
    Examples:
      sparseidx deny book.idx --items discontinued.txt
      sparseidx deny book.idx --clear
    The list is part of the index (deny.arrow, checksummed in the manifest); readers
    and 'sparseidx serve' see the old list or the new one, never a mix. A rebuild with
    'sparseidx build --overwrite' starts without a list.
    """
    if clear == (items_file is not None):
        raise click.UsageError("give --items FILE to set the deny list, or --clear to remove it")
    summary = set_denied(index, [] if clear else read_id_list(items_file), skip_unknown=skip_unknown)
    if as_json:
        echo_json(summary)
    else:
        info(f"{index}: {summary['denied_items']:,} items denied")
