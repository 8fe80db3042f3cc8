"""``sparseidx bench``: recall against latency for sparseidx and its peers, in one run."""

from __future__ import annotations

import os
import tempfile

import click
import numba

from sparseidx.bench import harness
from sparseidx.bench import peers as methods
from sparseidx.data import load_interactions
from sparseidx.errors import DataError
from sparseidx.bench.queries import benchmark_queries
from sparseidx.evaluate import onto_items
from sparseidx.index import Index
from sparseidx.index.calibrate import calibrate

from .common import FiniteFloat, IndexPath, echo_json, info

PEERS = ("scipy", "seismic", "faiss")


def _int_list(ctx, param, value):
    try:
        out = [int(v) for v in value.split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not out or min(out) < 1:
        raise click.BadParameter("give positive integers, e.g. 1,2")
    return out


def _int_list_or_empty(ctx, param, value):
    return _int_list(ctx, param, value) if value else []


def _peer_list(ctx, param, value):
    names = [v for v in value.split(",") if v]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        raise click.BadParameter(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    return names


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--train", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Interactions giving each query user's history.")
@click.option("--test", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Held-out interactions: query users are the test users; quality is measured on them.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Report directory: report.json, report.md, latency.png, batch_<t>t.png.")
@click.option("--peers", default="scipy,seismic", show_default=True, callback=_peer_list,
              help=f"Comma-separated peers among {', '.join(PEERS)} (faiss needs --dense-index).")
@click.option("--dense-index", "dense_indexes", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="FAISS-backed index(es) for the faiss peer (repeat for several).")
@click.option("--threads", default=f"1,{numba.config.NUMBA_NUM_THREADS}", show_default=True, callback=_int_list,
              help="Thread counts for batch throughput.")
@click.option("-k", "k", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--queries", type=click.IntRange(min=1), default=None,
              help="Use a random sample of this many test users (default: all).")
@click.option("--latency-queries", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Queries timed one by one for single-thread latency.")
@click.option("--sweep", type=click.Choice(["default", "quick"]), default="default", show_default=True,
              help="quick: a few settings per method, for smoke runs.")
@click.option("--postings-per-dim", "static_pruning", default="", callback=_int_list_or_empty,
              help="Also measure INDEX statically pruned to these postings per dimension (comma-separated, "
                   "e.g. 50,100): each variant is built and written to a temporary index, then served like INDEX.")
@click.option("--target-recall", type=FiniteFloat(0, 1, min_open=True), default=None,
              help="Also measure the setting that reaches this recall@k, calibrated on --train's histories.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report rows as JSON.")
def bench(index, train, test, out, peers, dense_indexes, threads, k, queries, latency_queries, sweep, static_pruning,
          target_recall, seed, as_json):
    """Recall@k against the exact answer vs queries per second, for every method and setting.

    \b
    Example:
      sparseidx bench book.idx --train train.txt --test test.txt --out reports/bench \\
          --peers scipy,seismic,faiss --dense-index lowrank.idx --threads 1,2
    Single-thread latency (p50, p99) and all-core batch throughput are reported separately,
    with Recall@k/NDCG@k on the test split and index bytes per method; sparseidx's time
    per query is set against the cost model P x 1 ns + N x 0.6 ns. With --postings-per-dim
    the same queries run on statically pruned copies of INDEX (quality against size).
    """
    if "faiss" in peers and not dense_indexes:
        raise click.UsageError("the faiss peer needs --dense-index PATH (build one with 'sparseidx build TRAIN "
                               "--model chol-lowrank --backend faiss --faiss-index HNSW32,Flat')")
    idx = Index.open(index)
    if idx.backend != "sparse":
        raise DataError(f"{index}: bench compares sparse indexes with their peers; give a sparse index")
    train_i = load_interactions(train, item_ids=idx.item_ids, skip_unknown=True)
    test_i = load_interactions(test)
    H, T, sizes = benchmark_queries(idx, train_i, test_i, queries, seed)
    info(f"{H.shape[0]:,} queries; computing exact answers")
    exact = idx.search_detailed(H, k, idx.Options()).ids
    with tempfile.TemporaryDirectory(prefix="sparseidx-bench-") as tmp:
        chosen = _methods(idx, peers, dense_indexes, sweep)
        point = None
        if target_recall is not None:
            point = calibrate(idx, onto_items(train_i, idx.item_ids), target_recall, k, seed=seed)
            chosen[0].sweep = chosen[0].sweep + [point["knobs"]]
        chosen[1:1] = _static_variants(idx, static_pruning, tmp)
        rows = harness.run(chosen, H, T, sizes, exact, k, threads, latency_queries, idx.n_items, seed)
    meta = {"index": os.path.abspath(index), "queries": int(H.shape[0]), "latency_queries": latency_queries,
            "target_recall": point,
            "n_items": idx.n_items, "k": k, "threads": threads}
    text = harness.write_report(rows, out, meta, k, threads)
    if as_json:
        echo_json({"meta": meta, "rows": rows})
    else:
        click.echo(text)
        info(f"report written to {out}")


STATIC_SWEEP = [{}, {"prune": 1e-3}, {"prune": 3e-3}]


def _static_variants(idx, postings_per_dim, tmp):
    """INDEX pruned at build time to each number of postings per dimension, written and reopened."""
    variants = []
    factors = idx.to_factors() if postings_per_dim else None
    for p in postings_per_dim:
        path = os.path.join(tmp, f"ppd{p}.idx")
        Index.build(factors, backend="sparse", postings_per_dim=p).write(path)
        variants.append(methods.Sparseidx(Index.open(path), STATIC_SWEEP, name=f"sparseidx postings-per-dim={p}"))
    return variants


QUICK = {"sparseidx": [{}, {"prune": 1e-3}, {"budget": 200_000}, {"query_dims": 300}],
         "seismic": [{"query_cut": 300, "heap_factor": 0.9}]}


def _methods(idx, names, dense_indexes, sweep):
    """sparseidx first, then the requested peers, with full or quick sweeps."""
    quick = sweep == "quick"
    chosen = [methods.Sparseidx(idx, QUICK["sparseidx"] if quick else None)]
    for name in names:
        if name == "scipy":
            chosen.append(methods.ScipyExact(idx))
        elif name == "seismic":
            chosen.append(methods.Seismic(idx, QUICK["seismic"] if quick else None))
        else:
            for path in dense_indexes:
                peer = methods.Faiss(path)
                if quick:
                    peer.sweep = peer.sweep[:: max(1, len(peer.sweep) // 2)]
                chosen.append(peer)
    return chosen
