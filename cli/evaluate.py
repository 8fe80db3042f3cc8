"""``sparseidx evaluate``: ranking quality of an index on a train/test split or on held-out users."""

from __future__ import annotations

import click

from sparseidx.evaluate import RECALL_DEFINITIONS, evaluate_heldout
from sparseidx.evaluate import evaluate as run_evaluation
from sparseidx.index import Index

from .common import (FiniteFloat, IndexPath, echo_json, echo_table, filter_options, index_options, read_filters,
                     search_options)


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--train", type=click.Path(exists=True, dir_okay=False),
              help="Interactions whose items are each user's history (excluded from the answers).")
@click.option("--test", type=click.Path(exists=True, dir_okay=False),
              help="Held-out interactions to find.")
@click.option("--heldout-users", type=click.Path(exists=True, dir_okay=False),
              help="Instead of --train/--test: interactions of users the index was not trained on; each user's "
                   "items are split into a fold-in history and a test set (--fold-in, --seed).")
@click.option("--fold-in", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.8, show_default=True,
              help="With --heldout-users: share of each user's items used as the history (ceil(share x n)).")
@click.option("--seed", type=int, default=0, show_default=True, help="With --heldout-users: seed of the split.")
@click.option("--recall-definition", "recall", type=click.Choice(RECALL_DEFINITIONS), default="bars",
              show_default=True, help="Recall@k = hits/|test| (bars) or hits/min(k, |test|) (liang: Liang et al., "
                                      "the Cholesky, ELSA and SANSA papers' tables).")
@click.option("-k", "ks", type=click.IntRange(min=1), multiple=True, default=(20,), show_default=True,
              help="Cut-off; repeat for several (-k 20 -k 50).")
@search_options
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(index, train, test, heldout_users, fold_in, seed, recall, ks, as_json, exclude_items, allow_items,
             **search):
    """Recall, NDCG, Precision, MAP @k and coverage of INDEX on a train/test split or held-out users.

    \b
    Definitions: Recall@k = hits/|test| (BARS; --recall-definition liang: hits/min(k, |test|));
    NDCG@k with ideal DCG over min(|test|, k); coverage = share of each user's non-history items
    with a non-zero score. See docs/evaluation.md.
    Example:
      sparseidx evaluate book.idx --train train.txt --test test.txt -k 20 -k 50
      sparseidx evaluate book.idx --train train.txt --test test.txt --exclude-items out_of_stock.txt
      sparseidx evaluate book.idx --heldout-users heldout.txt --fold-in 0.8 --seed 0 --recall-definition liang
    Filtered items are never recommended; held-out ones among them count as misses.
    """
    if heldout_users and (train or test):
        raise click.UsageError("give --train and --test, or --heldout-users, not both")
    if not heldout_users and not (train and test):
        raise click.UsageError("give --train and --test (a split), or --heldout-users FILE (fold-in protocol)")
    idx = Index.open(index)
    options = index_options(idx, search)
    common = dict(ks=ks, options=options, recall=recall, **read_filters(exclude_items, allow_items))
    if heldout_users:
        result = evaluate_heldout(idx, heldout_users, fold_in=fold_in, seed=seed, **common)
    else:
        result = run_evaluation(idx, train, test, **common)
    if as_json:
        echo_json(result)
        return
    echo_table([{"metric": k, "value": v} for k, v in result.items()])
