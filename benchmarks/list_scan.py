"""Where a pruned query's time goes: postings against the posting lists they sit in.

The cost model of issue 3 charges 1 ns a posting, the cost of a scatter-add over one
long stream of postings. A pruned query reads short prefixes of hundreds of lists
at scattered offsets instead. This benchmark measures both on this host, in one run:

1. The host's scatter-add: 2^21 postings added into 24,915 floats (the catalogue of
   amazon-book), read as one stream, as lists of geometric lengths (the means a
   pruned query sees) back to back, and as the same lists at random offsets of a
   64 MB postings array (each list's head a cache and TLB miss, as in an index), with
   and without the engine's prefetch of the list heads a few lists ahead.
   Reported per posting and per list.
2. The host's load latency: a chain of dependent loads, one per 64-byte line, in random
   order over working sets from L2-sized to larger than the index, beside the bytes of
   the index's posting arrays: what a list head costs when no prefetch hides it.
3. The engine on an index, one thread, over a sweep of ``prune``: lists visited,
   postings scanned and items with a non-zero score per query (lists counted from
   u = xE in numpy by the engine's rule), and time per query in a batch.
4. What the visited lists hold: the share of them whose head alone passes the cut,
   and the longer prefixes of the others scatter-added query after query as the
   engine does (listing each item it touches first, the listed items reset after each
   query) and as a plain scatter-add (the accumulator zeroed after each query): the
   cost of the engine's touched-item list on the postings that dominate these queries.

Every case runs once per round, rounds in turn, and each figure is the median over
the rounds: the host's speed drifts from minute to minute, and it moves every case alike.

    python benchmarks/list_scan.py reports/foundation/chol-k200.idx --data examples/amazon-book \\
        --out reports/list-scan
"""

from __future__ import annotations

import argparse
import os
import time

import numba as nb
import numpy as np
import scipy.sparse as sp

import report  # benchmarks/, this script's directory

from sparseidx import Index
from sparseidx.data import load_interactions
from sparseidx.index.kernels import PREFETCH
from sparseidx.index.prefetch import prefetch

N_ITEMS = 24_915
POSTINGS = 1 << 21
ARRAY = 8 << 20  # postings in the array the random-offset lists are read from (64 MB of ids and weights)
MEAN_LENGTHS = (2, 5, 10, 20, 50)
CHASE_MB = (0.5, 4, 16, 64)  # working sets of the load-latency chains
CHASE_LOADS = 1 << 21
LINE_INT64 = 8  # int64 slots in a 64-byte cache line
PRUNES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@nb.njit(cache=True)
def _scatter_lists(starts, lengths, items, weights, acc, ahead):
    """Add each list's postings into acc, list after list; returns the postings added.

    With ``ahead`` > 0 the head of the list that many lists on is prefetched first, as the engine does.
    """
    total = 0
    n = starts.shape[0]
    for t in range(n):
        if ahead > 0 and t + ahead < n:
            prefetch(items, starts[t + ahead])
            prefetch(weights, starts[t + ahead])
        s = starts[t]
        for p in range(s, s + lengths[t]):
            acc[items[p]] += weights[p]
        total += lengths[t]
    return total


def host_cases(seed: int = 0) -> list[dict]:
    """The scatter-add under each layout of the same postings: (name, run, postings, lists) per case."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, N_ITEMS, ARRAY).astype(np.uint32)
    weights = rng.standard_normal(ARRAY).astype(np.float32)
    acc = np.zeros(N_ITEMS, dtype=np.float32)
    layouts = [("one stream", np.array([0]), np.array([POSTINGS]), 0)]
    for mean in MEAN_LENGTHS:
        lengths = np.minimum(rng.geometric(1.0 / mean, POSTINGS // mean), 10 * mean)
        scattered = rng.integers(0, ARRAY - lengths.max(), len(lengths))
        layouts.append((f"lists of mean length {mean}, back to back",
                        np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths, 0))
        layouts.append((f"lists of mean length {mean}, random offsets", scattered, lengths, 0))
        layouts.append((f"lists of mean length {mean}, random offsets, heads prefetched {PREFETCH} lists ahead",
                        scattered, lengths, PREFETCH))
    cases = []
    for name, starts, lengths, ahead in layouts:
        starts, lengths = starts.astype(np.int64), lengths.astype(np.int64)
        cases.append({"layout": name, "lists": int(len(lengths)), "postings": int(lengths.sum()),
                      "run": lambda s=starts, n=lengths, a=ahead: _scatter_lists(s, n, items, weights, acc, a)})
    return cases


@nb.njit(cache=True)
def _chase(nxt, loads):
    """Follow ``loads`` links of the chain in nxt from slot 0; returns where it stopped (keeps the loads live)."""
    p = 0
    for _ in range(loads):
        p = nxt[p]
    return p


def latency_cases(seed: int = 0) -> list[dict]:
    """A dependent-load chain through every cache line of each working set, lines in random order.

    The chain is one cycle over the lines' first slots (slot 0 among them), so following
    it from slot 0 visits every line before any repeats.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for mb in CHASE_MB:
        n_lines = int(mb * (1 << 20)) // 64
        order = rng.permutation(n_lines) * LINE_INT64
        nxt = np.zeros(n_lines * LINE_INT64, dtype=np.int64)
        nxt[order] = np.roll(order, -1)
        cases.append({"working_set_mb": mb, "loads": CHASE_LOADS,
                      "run": lambda a=nxt: _chase(a, CHASE_LOADS)})
    return cases


def visited_lists(U: sp.csr_matrix, index: Index, prune: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (query, dimension) entries of U = xE whose lists a ``prune`` query scans, by the engine's rule.

    Returns the entries' positions in U.data, their queries and their cuts: a list is
    visited when |u_d| max|V_d| >= prune x the query's largest such bound (and not 0),
    and scanned while |v| >= cut = that threshold / |u_d|.
    """
    bounds = np.abs(U.data) * index.max_abs[U.indices]
    rows = np.repeat(np.arange(U.shape[0]), np.diff(U.indptr))
    top = np.zeros(U.shape[0], dtype=np.float32)
    np.maximum.at(top, rows, bounds)
    tau = np.float32(prune) * top[rows]
    at = np.flatnonzero((bounds >= tau) & (bounds != 0))
    return at, rows[at], (tau[at] / np.abs(U.data[at])).astype(np.float32)


def second_weights(index: Index) -> np.ndarray:
    """|weight| of each list's second posting (0 for lists of one): lists are impact ordered, so a query whose
    cut is above it scans that list's head alone."""
    lengths = np.diff(index.v_indptr)
    second = np.zeros(len(lengths), dtype=np.float32)
    two = lengths >= 2
    second[two] = np.abs(index.v_weights[index.v_indptr[:-1][two] + 1])
    return second


@nb.njit(cache=True)
def _prefix_lengths(starts, stops, cuts, weights):
    """Postings at the head of each impact-ordered list with |weight| >= its cut (binary search)."""
    out = np.empty(starts.shape[0], dtype=np.int64)
    for t in range(starts.shape[0]):
        lo, hi = starts[t], stops[t]
        while lo < hi:
            mid = (lo + hi) >> 1
            if abs(weights[mid]) >= cuts[t]:
                lo = mid + 1
            else:
                hi = mid
        out[t] = lo - starts[t]
    return out


@nb.njit(cache=True)
def _scatter_tracked(q_ptr, starts, lengths, uds, items, weights, acc, touched):
    """Each query's prefixes added into acc as the engine adds them (first touches listed without a branch),
    then its listed items reset; returns the items listed. Unlike the engine, it keeps listing past
    n_items / 4 items (the engine marks item blocks from there on), so that every query pays the same way."""
    listed = 0
    for q in range(q_ptr.shape[0] - 1):
        n = np.uint64(0)
        for t in range(q_ptr[q], q_ptr[q + 1]):
            ud = uds[t]
            for p in range(np.uint64(starts[t]), np.uint64(starts[t] + lengths[t])):
                i = items[p]
                a = acc[i]
                touched[n] = i
                n += np.uint64(a == 0.0)
                acc[i] = a + ud * weights[p]
        for t in range(n):
            acc[touched[t]] = 0.0
        listed += n
    return listed


@nb.njit(cache=True)
def _scatter_plain(q_ptr, starts, lengths, uds, items, weights, acc):
    """Each query's prefixes added into acc with nothing listed, then the whole accumulator zeroed."""
    for q in range(q_ptr.shape[0] - 1):
        for t in range(q_ptr[q], q_ptr[q + 1]):
            ud = uds[t]
            for p in range(np.uint64(starts[t]), np.uint64(starts[t] + lengths[t])):
                acc[items[p]] += ud * weights[p]
        acc[:] = 0.0


def engine_cases(index: Index, H: sp.csr_matrix, k: int = 20) -> tuple[list[dict], list[dict]]:
    """Per prune threshold: the engine's batch with its counts per query, and the scatter-add of the prefixes of
    the visited lists that hold more than their head, engine-style and plain, each with its run to time."""
    U = sp.csr_matrix(H @ index.to_factors().encoder, dtype=np.float32)
    second = second_weights(index)
    items = index.v_items.view(np.uint32)
    acc = np.zeros(index.n_items, dtype=np.float32)
    cases, prefix_cases = [], []
    for prune in PRUNES:
        at, rows, cuts = visited_lists(U, index, prune)
        dims = U.indices[at]
        head_only = second[dims] < cuts
        res = index.search_detailed(H, k, threads=1, prune=prune)
        cases.append({"prune": prune, "lists_per_query": len(at) / H.shape[0],
                      "head_only_share": float(head_only.mean()) if len(at) else 0.0,
                      "postings_per_query": float(res.postings.mean()),
                      "items_scored_per_query": float(res.nonzero.mean()),
                      "run": lambda p=prune: index.search_detailed(H, k, threads=1, prune=p)})
        longer = ~head_only
        starts = index.v_indptr[dims[longer]]
        lengths = _prefix_lengths(starts, index.v_indptr[dims[longer] + 1], cuts[longer], index.v_weights)
        q_ptr = np.concatenate(([0], np.cumsum(np.bincount(rows[longer], minlength=H.shape[0]))))
        uds = U.data[at[longer]]
        # a query lists at most one item per posting it adds, plus the spare slot of the branch-free append
        most = np.bincount(rows[longer], weights=lengths, minlength=H.shape[0]).max(initial=0)
        touched = np.empty(int(most) + 1, dtype=np.uint32)
        prefixes = (q_ptr, starts, lengths, uds)
        runs = {"listing touched items (the engine)":
                lambda a=prefixes, t=touched: _scatter_tracked(*a, items, index.v_weights, acc, t),
                "plain": lambda a=prefixes: _scatter_plain(*a, items, index.v_weights, acc)}
        for way, run in runs.items():
            prefix_cases.append({"prune": prune, "scatter": way, "lists_per_query": float(longer.sum()) / H.shape[0],
                                 "postings": int(lengths.sum()), "run": run})
    return cases, prefix_cases


def time_rounds(cases: list[dict], rounds: int) -> None:
    """Median seconds of each case's ``run`` into its ``seconds``; every round runs every case once, in turn."""
    for case in cases:
        case["run"]()
    runs = [[] for _ in cases]
    for _ in range(rounds):
        for case, out in zip(cases, runs):
            t0 = time.perf_counter()
            case["run"]()
            out.append(time.perf_counter() - t0)
    for case, out in zip(cases, runs):
        case["seconds"] = float(np.median(out))
        del case["run"]


def host_rows(cases: list[dict]) -> list[dict]:
    """Timed host cases with ns per posting and per list."""
    return [{**c, "ns_per_posting": c["seconds"] / c["postings"] * 1e9, "ns_per_list": c["seconds"] / c["lists"] * 1e9}
            for c in cases]


def latency_rows(cases: list[dict]) -> list[dict]:
    """Timed load chains with ns per dependent load."""
    return [{**c, "ns_per_load": c["seconds"] / c["loads"] * 1e9} for c in cases]


def prefix_rows(cases: list[dict], n_queries: int) -> list[dict]:
    """Timed prefix scatter-adds with postings per query and ns per posting."""
    return [{**c, "postings_per_query": c["postings"] / n_queries,
             "ns_per_posting": c["seconds"] / max(c["postings"], 1) * 1e9} for c in cases]


def engine_rows(cases: list[dict], n_queries: int) -> list[dict]:
    """Timed engine cases with time per query, and that time per posting scanned and per list visited."""
    rows = []
    for c in cases:
        us = c["seconds"] / n_queries * 1e6
        rows.append({**c, "postings_per_list": c["postings_per_query"] / max(c["lists_per_query"], 1e-9),
                     "batch_us_per_query": us, "ns_per_posting_scanned": us * 1000 / c["postings_per_query"],
                     "ns_per_list_visited": us * 1000 / c["lists_per_query"]})
    return rows


def render(host: list[dict], latency: list[dict], engine: list[dict], prefixes: list[dict], meta: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"# Posting lists against postings ({meta['date']})", "",
             "Command: `python benchmarks/list_scan.py " + meta["index"] + " --data " + meta["data"]
             + " --out " + meta["out"] + "`. Each figure is the median of " + str(meta["rounds"])
             + " rounds that run every case in turn.", "",
             f"## This host's scatter-add: {POSTINGS:,} postings into {N_ITEMS:,} floats", "",
             *report.table(["layout", "lists", "ns / posting", "ns / list"],
                           [[r["layout"], f"{r['lists']:,}", f"{r['ns_per_posting']:.2f}",
                             f"{r['ns_per_list']:.1f}" if r["lists"] > 1 else "-"] for r in host])]
    lines += ["", "## This host's load latency", "",
              "A chain of dependent loads, one per 64-byte line, lines in random order. The index's posting "
              f"arrays (item ids and weights) take {meta['postings_mb']:,.1f} MB.", "",
              *report.table(["working set MB", "ns / load"],
                            [[f"{r['working_set_mb']:g}", f"{r['ns_per_load']:.1f}"] for r in latency])]
    lines += ["", f"## The engine, one thread, {meta['queries']:,} test users' histories, k = 20", "",
              *report.table(["prune", "lists visited / query", "of them, head only", "postings / query",
                             "postings / list", "items scored / query", "batch us / query", "ns / posting",
                             "ns / list"],
                            [[f"{r['prune']:g}", f"{r['lists_per_query']:,.0f}", f"{r['head_only_share']:.1%}",
                              f"{r['postings_per_query']:,.0f}", f"{r['postings_per_list']:.1f}",
                              f"{r['items_scored_per_query']:,.0f}", f"{r['batch_us_per_query']:.1f}",
                              f"{r['ns_per_posting_scanned']:.2f}", f"{r['ns_per_list_visited']:.1f}"]
                             for r in engine])]
    lines += ["", "Engine time per query covers the whole query (encoding, lists, selection, rescoring of "
              "40 candidates); ns / posting and ns / list divide that whole by each count. Compare a "
              "threshold's postings per list with the host's lists of that mean length at random offsets, "
              "heads prefetched (as the engine's are). *Head only*: lists whose second posting is below the "
              "query's cut, so the scan takes their first posting alone.", "",
              "## The longer prefixes: the visited lists that hold more than their head", "",
              "Their prefixes (postings with |v| >= the cut) scatter-added query after query, as the engine adds "
              "them (each item listed at its first touch, the listed items reset after the query) and plain "
              "(nothing listed, the whole accumulator zeroed after the query).", "",
              *report.table(["prune", "lists / query", "postings / query", "scatter", "ns / posting"],
                            [[f"{r['prune']:g}", f"{r['lists_per_query']:,.1f}", f"{r['postings_per_query']:,.0f}",
                              r["scatter"], f"{r['ns_per_posting']:.2f}"] for r in prefixes]), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", help="a sparseidx index directory (Cholesky k=200 in the README's figures)")
    ap.add_argument("--data", required=True, help="directory with train.txt and test.txt")
    ap.add_argument("--out", required=True, help="report directory (report.json, report.md)")
    ap.add_argument("--queries", type=int, default=5000, help="random test users whose train histories are queried")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds; each figure is the median over them")
    args = ap.parse_args()
    index = Index.open(args.index)
    train = load_interactions(os.path.join(args.data, "train.txt"))
    test = load_interactions(os.path.join(args.data, "test.txt"), user_ids=train.user_ids, skip_unknown=True)
    users = np.flatnonzero((np.diff(test.X.indptr) > 0) & (np.diff(train.X.indptr) > 0))
    users = np.random.default_rng(0).choice(users, size=min(args.queries, len(users)), replace=False)
    H = sp.csr_matrix(train.X[np.sort(users)], dtype=np.float32)
    host, latency, (engine, prefixes) = host_cases(), latency_cases(), engine_cases(index, H)
    # every case once per round, rounds in turn: a host that speeds up or slows down moves every case alike
    time_rounds(host + latency + engine + prefixes, args.rounds)
    host, latency = host_rows(host), latency_rows(latency)
    engine, prefixes = engine_rows(engine, H.shape[0]), prefix_rows(prefixes, H.shape[0])
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "index": args.index, "data": args.data, "out": args.out,
            "queries": int(H.shape[0]), "rounds": args.rounds,
            "postings_mb": (index.v_items.nbytes + index.v_weights.nbytes) / (1 << 20)}
    report.write(args.out, {"meta": meta, "host": host, "latency": latency, "engine": engine, "prefixes": prefixes},
                 render(host, latency, engine, prefixes, meta))


if __name__ == "__main__":
    main()
