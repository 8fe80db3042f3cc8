"""Batch recommendations and the Gram matrix on Dask, against the single-process batch in the same run.

Users: synthetic histories (1..40 items, drawn by the index's item popularity) written as
a Parquet dataset of ``--users-per-file`` users a file. For each user count: the
single-process batch (``recommend_file`` over the same files in turn, one engine
thread), then ``sparseidx.distributed.recommend`` on a fresh LocalCluster of 1 and of 2
single-threaded worker processes. Reported: users/s, scaling efficiency (2-worker
throughput / twice the 1-worker one), overhead (1-worker time / single-process time - 1)
and each worker's peak RSS (which includes the pages of the memory-mapped index it read).
Gram: a synthetic interactions dataset of ``--gram-rows`` rows, X^T X and item counts
by ``sparseidx.distributed.gram`` on 2 workers against one process forming X^T X.

    python benchmarks/distributed.py --index /tmp/dist/book.idx --users 100000 1000000 \\
        --gram-rows 10000000 --out reports/distributed
"""

from __future__ import annotations

import os
import sys

# this file's name is the dask package's: keep its folder behind the installed packages on the import path (here
# and in spawned workers), where it still gives this script's sibling modules
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]

import argparse
import json
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import report  # benchmarks/, this script's directory

from sparseidx.batch import recommend_file
from sparseidx.data import load_interactions
from sparseidx.distributed import gram, recommend
from sparseidx.index import Index


def write_dataset(root: str, n_users: int, per_file: int, weights: np.ndarray, max_len: int, seed: int) -> int:
    """Synthetic (user, item) Parquet files, ``per_file`` users each; returns the number of rows."""
    os.makedirs(root)
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    rows = 0
    for f, first in enumerate(range(0, n_users, per_file)):
        users = np.arange(first, min(first + per_file, n_users), dtype=np.int64)
        lengths = rng.integers(1, max_len + 1, len(users))
        items = rng.choice(len(p), int(lengths.sum()), p=p).astype(np.int64)
        pq.write_table(pa.table({"user": np.repeat(users, lengths), "item": items}),
                       os.path.join(root, f"part-{f:05d}.parquet"))
        rows += len(items)
    return rows


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (run on each worker through ``client.run``).

    VmHWM, not getrusage's maxrss: Linux carries maxrss over fork and exec, so a worker
    spawned by a large client would report the client's peak.
    """
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def cluster(n_workers: int):
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                     dashboard_address=None, silence_logs=40)
    return c, Client(c)


def single_process(index, data: str, out: str, k: int, knobs: dict) -> float:
    os.makedirs(out)
    t0 = time.perf_counter()
    for name in sorted(os.listdir(data)):
        recommend_file(index, os.path.join(data, name), os.path.join(out, name), k, threads=1, **knobs)
    return time.perf_counter() - t0


def distributed_run(index_path: str, data: str, out: str, k: int, knobs: dict, n_workers: int) -> dict:
    c, client = cluster(n_workers)
    try:
        client.run(lambda: __import__("sparseidx.index", fromlist=["Index"]))  # imports before the clock
        t0 = time.perf_counter()
        summary = recommend(index_path, data, out, k, client, **knobs)
        seconds = time.perf_counter() - t0
        peaks = sorted(client.run(peak_rss_mb).values())
    finally:
        client.close()
        c.close()
    return {"seconds": seconds, "users": summary["users"], "peak_rss_mb": peaks}


def bench_users(args, index, work: str) -> list[dict]:
    rows = []
    for n in args.users:
        data = os.path.join(work, f"users-{n}")
        write_dataset(data, n, args.users_per_file, index.popularity.astype(float) + 1, 40, seed=n)
        knobs = {"prune": args.prune}
        single = single_process(index, data, os.path.join(work, f"single-{n}"), args.k, knobs)
        row = {"users": n, "files": len(os.listdir(data)), "single_seconds": single, "single_users_per_s": n / single}
        for w in (1, 2):
            res = distributed_run(args.index, data, os.path.join(work, f"dist-{n}-{w}"), args.k, knobs, w)
            assert res["users"] == n, res
            row[f"w{w}_seconds"], row[f"w{w}_users_per_s"] = res["seconds"], n / res["seconds"]
            row[f"w{w}_peak_rss_mb"] = res["peak_rss_mb"]
        row["scaling_efficiency"] = row["w2_users_per_s"] / (2 * row["w1_users_per_s"])
        row["overhead_1_worker"] = row["w1_seconds"] / single - 1
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(work + f"/single-{n}")
    return rows


def bench_gram(args, index, work: str) -> dict:
    data = os.path.join(work, "gram")
    per_file = args.gram_users_per_file
    n_users = args.gram_rows // 10  # 10 items a user on average (1..19)
    rows = write_dataset(data, n_users, per_file, index.popularity.astype(float) + 1, 19, seed=1)
    c, client = cluster(2)
    try:
        t0 = time.perf_counter()
        result = gram(data, client)
        dist = time.perf_counter() - t0
        peaks = sorted(client.run(peak_rss_mb).values())
    finally:
        client.close()
        c.close()
    t0 = time.perf_counter()
    X = load_interactions_all(data)
    G = (X.T @ X).tocsr()
    single = time.perf_counter() - t0
    equal = bool((G != result.G).nnz == 0)
    return {"rows": rows, "users": n_users, "files": len(os.listdir(data)), "items": len(result.item_ids),
            "gram_nnz": int(result.G.nnz), "dask_2_workers_seconds": dist, "single_process_seconds": single,
            "worker_peak_rss_mb": peaks, "client_peak_rss_mb": peak_rss_mb(), "equal_to_single": equal}


def load_interactions_all(data: str):
    """Every file of the dataset in one process, as one matrix (the single-machine reference)."""
    table = pa.concat_tables(pq.read_table(os.path.join(data, n)) for n in sorted(os.listdir(data)))
    path = os.path.join(os.path.dirname(data), "gram-all.parquet")
    pq.write_table(table, path)
    try:
        return load_interactions(path).X
    finally:
        os.unlink(path)


def report_md(users: list[dict], gram_row: dict | None, args) -> str:
    lines = ["# Batch recommendations and the Gram matrix on Dask", "",
             f"Index: `{args.index}` (amazon-book Cholesky, --l2 200 --k 200); k={args.k}, prune={args.prune}, "
             f"{args.users_per_file:,} users a file; one machine of {os.cpu_count()} cores, "
             "LocalCluster of single-threaded worker processes.", "",
             *report.table(["users", "single process users/s", "1 worker users/s", "2 workers users/s",
                            "scaling efficiency", "overhead (1 worker)", "peak RSS per worker (MB)"],
                           [[f"{r['users']:,}", f"{r['single_users_per_s']:,.0f}", f"{r['w1_users_per_s']:,.0f}",
                             f"{r['w2_users_per_s']:,.0f}", f"{r['scaling_efficiency']:.2f}",
                             f"{r['overhead_1_worker']:+.1%}",
                             ", ".join(f"{m:,.0f}" for m in r["w1_peak_rss_mb"] + r["w2_peak_rss_mb"])]
                            for r in users])]
    if gram_row:
        g = gram_row
        lines += ["", f"Gram: {g['rows']:,} interactions of {g['users']:,} users on {g['items']:,} items in "
                  f"{g['files']} files; X^T X has {g['gram_nnz']:,} non-zeros. Dask, 2 workers: "
                  f"{g['dask_2_workers_seconds']:.1f} s (peak RSS per worker "
                  f"{', '.join(f'{m:,.0f}' for m in g['worker_peak_rss_mb'])} MB); one process reading all of "
                  f"it and forming X^T X: {g['single_process_seconds']:.1f} s. Equal: {g['equal_to_single']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--users", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--users-per-file", type=int, default=50_000)
    parser.add_argument("--gram-rows", type=int, default=10_000_000)
    parser.add_argument("--gram-users-per-file", type=int, default=100_000)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--prune", type=float, default=0.01)
    parser.add_argument("--work", default="/tmp/dist/work")
    parser.add_argument("--out", default="reports/distributed")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    index = Index.open(args.index)
    users = bench_users(args, index, args.work)
    gram_row = bench_gram(args, index, args.work) if args.gram_rows else None
    report.write(args.out, {"index": args.index, "k": args.k, "prune": args.prune,
                            "users_per_file": args.users_per_file, "cores": os.cpu_count(), "users": users,
                            "gram": gram_row}, report_md(users, gram_row, args))
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
