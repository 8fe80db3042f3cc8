"""Options and output helpers shared by the commands: JSON on stdout, tables for people."""

from __future__ import annotations

import json
import math

import click
import numpy as np

from sparseidx.data import read_id_list
from sparseidx.errors import DataError
from sparseidx.plain import json_default
from sparseidx.progress import log


class FiniteFloat(click.FloatRange):
    """A float option within a range; NaN and infinities are refused (they pass a plain range check)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def search_options(f):
    """The query-time knobs every searching command accepts."""
    options = [
        click.option("--query-dims", type=click.IntRange(min=1), default=None,
                     help="Keep only the m strongest dimensions of the user vector u = xE."),
        click.option("--query-mass", type=FiniteFloat(0, 1, min_open=True), default=None,
                     help="Keep the strongest dimensions of u holding this fraction of sum |u|."),
        click.option("--budget", type=click.IntRange(min=1), default=None,
                     help="Scan at most this many postings per query, highest impact first (anytime)."),
        click.option("--prune", type=FiniteFloat(0, 1, max_open=True), default=None,
                     help="Skip postings whose contribution |u_d * v| is below this fraction of the query's "
                          "largest possible one (e.g. 0.001), then rescore the best candidates exactly."),
        click.option("--candidates", type=click.IntRange(min=1), default=None,
                     help="Items rescored exactly after approximate scoring [default: 2k with --prune]."),
        click.option("--ef-search", type=click.IntRange(min=1), default=None,
                     help="FAISS HNSW indexes: efSearch (candidate list size) per query."),
        click.option("--nprobe", type=click.IntRange(min=1), default=None,
                     help="FAISS IVF indexes: inverted lists probed per query."),
        click.option("--target-recall", type=FiniteFloat(0, 1, min_open=True), default=None,
                     help="Instead of the knobs: the fastest setting whose recall@k against the exact answer "
                          "reaches this (the index's operating point if built for it, else calibrated on the "
                          "batch)."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Threads for batches (default: all cores)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def index_options(index, knobs: dict):
    """The index's search options from the command line's knobs; a usage error (exit 2) for a knob that the
    index's backend does not take or a value it refuses."""
    try:
        return index.options(None, **knobs)
    except DataError as exc:
        raise click.UsageError(str(exc)) from None


def filter_options(f):
    """Item filters: ids never returned, or the only ids that may be returned, one id a line."""
    options = [
        click.option("--exclude-items", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="File of item ids (one a line) never returned, e.g. out of stock."),
        click.option("--allow-items", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="File of item ids (one a line): only these are returned, e.g. one category."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def read_filters(exclude_items: str | None, allow_items: str | None) -> dict:
    """``exclude``/``allow`` keyword arguments of a search from the filter options' files."""
    return {"exclude": None if exclude_items is None else read_id_list(exclude_items),
            "allow": None if allow_items is None else read_id_list(allow_items)}


class IndexPath(click.Path):
    """An existing index directory; a clear hint when the index is not the first argument."""

    def __init__(self):
        super().__init__(exists=True, file_okay=False)

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"index directory {value!r} does not exist; the index comes first, e.g. "
                      "'sparseidx query book.idx --history 17 42'", param, ctx)


def echo_json(obj) -> None:
    """Machine output: one JSON document on stdout."""
    click.echo(json.dumps(obj, indent=2, default=json_default))


def echo_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """People output: an aligned plain-text table on stdout."""
    if not rows:
        return
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    return str(v)


def info(message: str) -> None:
    """A note for people, on stderr so that stdout stays machine-readable (silenced by -q)."""
    log.info("%s", message)
