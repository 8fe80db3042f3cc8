"""Batch recommendations over growing numbers of synthetic users: time, rate and peak memory.

Each size writes a lines file of synthetic users (history lengths and items drawn from the
index's own popularity) and runs ``sparseidx query IDX --users FILE --out OUT`` in a child
process, whose peak resident memory is its own. Streaming keeps that peak flat as users grow.

    python benchmarks/batch_stream.py INDEX --users 100000,1000000 --out reports/batch-stream
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

import report  # benchmarks/, this script's directory
from peak import run_measured

from sparseidx.index import Index

BLOCK = 200_000  # users written at a time


def write_users(index, n_users: int, path: str, seed: int = 0) -> None:
    """``n_users`` lines 'user item item ...' with 1-30 items each, drawn by popularity."""
    rng = np.random.default_rng(seed)
    pop = np.asarray(index.popularity, dtype=np.float64) + 1.0
    cdf = np.cumsum(pop / pop.sum())
    with open(path, "w") as fh:
        for start in range(0, n_users, BLOCK):
            n = min(BLOCK, n_users - start)
            lengths = rng.integers(1, 31, n)
            items = index.item_ids[np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), len(cdf) - 1)]
            tokens = items.astype(str)
            ends = np.cumsum(lengths)
            rows = np.split(tokens, ends[:-1])
            fh.write("\n".join(f"{start + u} " + " ".join(r) for u, r in enumerate(rows)) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--users", default="100000,1000000", help="comma-separated numbers of users")
    ap.add_argument("--out", default="reports/batch-stream")
    ap.add_argument("--prune", default="0.003")
    ap.add_argument("-k", default="20")
    args = ap.parse_args()
    index = Index.open(args.index)
    rows = []
    with tempfile.TemporaryDirectory(prefix="batch-stream-") as tmp:
        for n in (int(v) for v in args.users.split(",")):
            users = os.path.join(tmp, f"users-{n}.txt")
            write_users(index, n, users)
            out = os.path.join(tmp, f"recs-{n}.parquet")
            cmd = [os.path.join(os.path.dirname(sys.executable), "sparseidx"), "-q", "query", args.index,
                   "--users", users, "--out", out, "-k", args.k, "--prune", args.prune, "--json"]
            t0 = time.perf_counter()
            output, peak = run_measured(cmd)
            seconds = time.perf_counter() - t0
            rows.append({"users": n, "file_mb": os.path.getsize(users) / 2**20, "seconds": seconds,
                         "users_per_s": n / seconds, "peak_rss_mib": peak, "summary": json.loads(output)})
            print(f"{n:,} users: {seconds:.1f} s, {n / seconds:,.0f} users/s, peak {peak:,.0f} MiB", file=sys.stderr)
            os.remove(users)
            os.remove(out)
    lines = [f"# Batch recommendations (query --users, prune={args.prune}, k={args.k}) on {args.index}", "",
             *report.table(["users", "file MB", "seconds", "users/s", "peak RSS MiB"],
                           [[f"{r['users']:,}", f"{r['file_mb']:,.0f}", f"{r['seconds']:.1f}",
                             f"{r['users_per_s']:,.0f}", f"{r['peak_rss_mib']:,.0f}"] for r in rows])]
    report.write(args.out, {"index": os.path.abspath(args.index), "prune": args.prune, "rows": rows},
                 "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
