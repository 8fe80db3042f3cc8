"""``sparseidx evaluate``: ranking quality of an index on a train/test split."""

from __future__ import annotations

import click

from sparseidx.evaluate import evaluate as run_evaluation
from sparseidx.index import Index

from .common import IndexPath, check_backend_options, echo_json, echo_table, search_kwargs, search_options


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--train", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Interactions whose items are each user's history (excluded from the answers).")
@click.option("--test", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Held-out interactions to find.")
@click.option("-k", "ks", type=click.IntRange(min=1), multiple=True, default=(20,), show_default=True,
              help="Cut-off; repeat for several (-k 20 -k 50).")
@search_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(index, train, test, ks, as_json, **search):
    """Recall, NDCG, Precision, MAP @k and coverage of INDEX on a train/test split.

    \b
    Definitions (BARS): Recall@k = hits/|test|; NDCG@k with ideal DCG over min(|test|, k);
    coverage = share of each user's non-history items with a non-zero score.
    Example:
      sparseidx evaluate book.idx --train train.txt --test test.txt -k 20 -k 50
    """
    idx = Index.open(index)
    options = search_kwargs(**search)
    check_backend_options(idx, options)
    result = run_evaluation(idx, train, test, ks=ks, **options)
    if as_json:
        echo_json(result)
        return
    echo_table([{"metric": k, "value": v} for k, v in result.items()])
