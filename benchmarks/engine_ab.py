"""The engine of an earlier revision against the working tree's, on the same index and queries, in one run.

Each round runs both trees (in alternating order) in child processes on the same
queries: single-query latency on one thread (p50 over the queries, options made once
as a caller would) and batch throughput on all cores, for exact search and the
pruning knobs. Reported: medians over the rounds, the ratio after/before, the noise
(the spread of one tree's own rounds), and whether both trees return identical ids.

    python benchmarks/engine_ab.py INDEX --histories examples/amazon-book/test.txt \\
        --before c62938c --out reports/engine-ab
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import report  # benchmarks/, this script's directory
from revision import export_revision

SETTINGS = [{}, {"prune": 1e-3}, {"prune": 3e-3}, {"query_dims": 300}, {"budget": 200_000}]
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(index_path: str, queries: str, k: int) -> dict:
    """Measure the engine importable from sys.path (one tree) on the saved queries."""
    import numba
    import scipy.sparse as sp

    from sparseidx.index import Index

    H = sp.load_npz(queries).tocsr()
    idx = Index.open(index_path)
    out = []
    for setting in SETTINGS:
        if hasattr(idx, "Options"):  # the options object, made once
            one, many = idx.Options.parse(setting, threads=1), idx.Options.parse(setting)

            def run(rows, opts):
                return idx.search_detailed(rows, k, opts)
        else:  # before the options objects: keyword knobs
            one, many = dict(setting, threads=1), dict(setting)

            def run(rows, opts):
                return idx.search_detailed(rows, k, **opts)
        run(H[:1], one)
        times = []
        for q in range(H.shape[0]):
            row = H[q]
            t0 = time.perf_counter()
            run(row, one)
            times.append(time.perf_counter() - t0)
        run(H[:64], many)
        t0 = time.perf_counter()
        ids = run(H, many).ids
        batch = time.perf_counter() - t0
        out.append({"setting": setting, "p50_us": float(np.percentile(times, 50) * 1e6),
                    "batch_qps": H.shape[0] / batch, "ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest()})
    import sparseidx

    return {"threads": numba.config.NUMBA_NUM_THREADS, "tree": os.path.dirname(os.path.dirname(sparseidx.__file__)),
            "rows": out}


def _queries(index_path: str, histories: str, n: int, seed: int, path: str) -> None:
    import scipy.sparse as sp

    from sparseidx.data import load_interactions
    from sparseidx.index import Index

    idx = Index.open(index_path)
    inter = load_interactions(histories, item_ids=idx.item_ids, skip_unknown=True)
    X = inter.X[np.diff(inter.X.indptr) > 0]
    pick = np.sort(np.random.default_rng(seed).choice(X.shape[0], min(n, X.shape[0]), replace=False))
    sp.save_npz(path, sp.csr_matrix(X[pick], dtype=np.float32))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--histories", required=True, help="interactions file whose users are the queries")
    ap.add_argument("--before", required=True, help="git revision of the earlier engine")
    ap.add_argument("--out", default="reports/engine-ab")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="engine-ab-") as tmp:
        queries = os.path.join(tmp, "queries.npz")
        _queries(args.index, args.histories, args.queries, args.seed, queries)
        trees = {"before": export_revision(args.before, tmp), "after": HERE}
        runs = {"before": [], "after": []}
        for r in range(args.rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                env = dict(os.environ, PYTHONPATH=trees[name])
                res = subprocess.run([sys.executable, os.path.abspath(__file__), "_child", args.index, queries,
                                      str(args.k)], env=env, cwd=trees[name], check=True, capture_output=True,
                                     text=True)
                run = json.loads(res.stdout.strip().splitlines()[-1])
                if os.path.realpath(run["tree"]) != os.path.realpath(trees[name]):
                    raise SystemExit(f"the {name} child imported sparseidx from {run['tree']}, not {trees[name]}")
                runs[name].append(run)
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)
    rows = []
    for s, setting in enumerate(SETTINGS):
        row = {"setting": json.dumps(setting)}
        for name in ("before", "after"):
            p50 = [run["rows"][s]["p50_us"] for run in runs[name]]
            qps = [run["rows"][s]["batch_qps"] for run in runs[name]]
            row[f"{name}_p50_us"] = float(np.median(p50))
            row[f"{name}_qps"] = float(np.median(qps))
            row[f"{name}_p50_spread"] = float((max(p50) - min(p50)) / np.median(p50))
            row[f"{name}_qps_spread"] = float((max(qps) - min(qps)) / np.median(qps))
        row["p50_ratio"] = row["after_p50_us"] / row["before_p50_us"]
        row["qps_ratio"] = row["after_qps"] / row["before_qps"]
        hashes = {run["rows"][s]["ids_sha256"] for name in runs for run in runs[name]}
        row["identical_ids"] = len(hashes) == 1
        rows.append(row)
    meta = {"index": os.path.abspath(args.index), "before": args.before, "queries": args.queries,
            "rounds": args.rounds, "k": args.k, "threads": runs["after"][0]["threads"]}
    head = ["setting", "p50 before (us)", "p50 after (us)", "ratio", "spread b/a", "batch q/s before", "after",
            "ratio", "spread b/a", "same ids"]
    cells = [[r["setting"], f"{r['before_p50_us']:.1f}", f"{r['after_p50_us']:.1f}", f"{r['p50_ratio']:.3f}",
              f"{r['before_p50_spread']:.2f}/{r['after_p50_spread']:.2f}", f"{r['before_qps']:,.0f}",
              f"{r['after_qps']:,.0f}", f"{r['qps_ratio']:.3f}",
              f"{r['before_qps_spread']:.2f}/{r['after_qps_spread']:.2f}", r["identical_ids"]] for r in rows]
    lines = [f"# Engine A/B: {args.before} (before) vs working tree (after)", "",
             f"{args.queries} queries, k={args.k}, {args.rounds} rounds alternating, "
             f"batch on {meta['threads']} threads. Spread = (max - min) / median of one tree's rounds.", "",
             *report.table(head, cells)]
    report.write(args.out, {"meta": meta, "rows": rows, "runs": runs}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
