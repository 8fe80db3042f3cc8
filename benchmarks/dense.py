"""Issue 4 figures: dense low-rank baselines in FAISS next to the sparse Cholesky index, in one table.

PureSVD and the rank-d counterpart of the Cholesky/EASE model at d in {64, 256, 1024},
each served by FAISS Flat and HNSW32,Flat, and the sparse Cholesky k=200 index (exact
and --prune 0.001). For each: Recall@20 / NDCG@20 on the test split (all test users),
index bytes, build time (fit + index), single-query p50/p99 (one thread, one query per
call) and batch throughput (all test users, 2 threads). Each model is fitted in a child
process so its time and peak memory are its own.

    python benchmarks/dense.py --data examples/amazon-book --out reports/dense
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

import report  # benchmarks/, this script's directory
from arguments import amazon_book_parser

SPECS = ("Flat", "HNSW32,Flat")


def child(data: str, model: str, dims: int, l2: float, out: str) -> dict:
    """Fit one model, build its indexes, measure them; returns one row per (index, setting)."""
    import scipy.sparse as sp

    from sparseidx import Index, evaluate, fit_cholesky
    from sparseidx.bench.timing import batch_throughput, peak_rss_bytes, single_query_latency
    from sparseidx.data import load_interactions
    from sparseidx.evaluate import onto_items
    from sparseidx.index import format as fmt
    from sparseidx.index.dense import DenseIndex
    from sparseidx.models.lowrank import fit_cholesky_lowrank, fit_puresvd

    train = load_interactions(os.path.join(data, "train.txt"))
    test = load_interactions(os.path.join(data, "test.txt"), user_ids=train.user_ids, skip_unknown=True)
    users = np.flatnonzero(np.diff(test.X.indptr) > 0)
    H = sp.csr_matrix(onto_items(train, train.item_ids)[users], dtype=np.float32)
    H.sort_indices()
    sample = H[np.random.default_rng(0).choice(H.shape[0], 1000, replace=False)]
    t0 = time.perf_counter()
    if model == "chol":
        factors = fit_cholesky(train, l2=l2, k=200)
        builds = [("sparse", {}), ("sparse", {"prune": 1e-3})]
    else:
        fit = fit_puresvd if model == "puresvd" else fit_cholesky_lowrank
        factors = fit(train, dims=dims, **({} if model == "puresvd" else {"l2": l2}))
        builds = [(spec, {}) for spec in SPECS] + [("HNSW32,Flat", {"ef_search": 256})]
    fit_seconds = time.perf_counter() - t0
    rows, built = [], {}
    for spec, options in builds:
        if spec not in built:
            t1 = time.perf_counter()
            index = Index.build(factors) if spec == "sparse" else DenseIndex.build(factors, spec)
            path = os.path.join(out, f"{model}-d{factors.n_dims}-{spec.replace(',', '_')}.idx")
            index.write(path, overwrite=True)
            built[spec] = (Index.open(path), time.perf_counter() - t1)
        index, index_seconds = built[spec]
        quality = evaluate(index, train, os.path.join(data, "test.txt"), ks=(20,), **options)
        lat = single_query_latency(index, sample, 20, **options)
        thr = batch_throughput(index, H, 20, threads=2, repeat=1, **options)
        setting = ", ".join(f"{k}={v}" for k, v in options.items()) or "default"
        rows.append({"model": model, "dims": int(factors.n_dims), "index": spec, "setting": setting,
                     "recall@20": quality["recall@20"], "ndcg@20": quality["ndcg@20"],
                     "index_bytes": fmt.index_bytes(index.manifest), "fit_seconds": fit_seconds,
                     "index_seconds": index_seconds, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                     "qps_2_threads": thr["qps"], "peak_rss_gib": peak_rss_bytes() / 2**30})
    return {"rows": rows}


def run_child(args: list[str]) -> list[dict]:
    out = subprocess.run([sys.executable, __file__, "_child", *args], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["rows"]


def markdown(rows: list[dict], l2: float) -> str:
    head = ["model", "d", "index", "setting", "Recall@20", "NDCG@20", "index MB", "fit s", "index s", "p50 us",
            "p99 us", "batch QPS 2t", "peak RSS GiB"]
    cells = [[r["model"], r["dims"], r["index"], r["setting"], f"{r['recall@20']:.4f}", f"{r['ndcg@20']:.4f}",
              f"{r['index_bytes'] / 1e6:.0f}", f"{r['fit_seconds']:.1f}", f"{r['index_seconds']:.1f}",
              f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}", f"{r['qps_2_threads']:,.0f}", f"{r['peak_rss_gib']:.2f}"]
             for r in rows]
    lines = [f"## Dense low-rank (FAISS) vs sparse Cholesky k=200 on amazon-book (l2={l2:g})", "",
             *report.table(head, cells)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        data, model, dims, l2, out = sys.argv[2:7]
        print(json.dumps(child(data, model, int(dims), float(l2), out)))
        return
    ap = amazon_book_parser(__doc__, "reports/dense", 200.0)
    ap.add_argument("--dims", default="64,256,1024")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    idx_dir = os.path.join(args.out, "indexes")
    os.makedirs(idx_dir, exist_ok=True)
    rows = run_child([args.data, "chol", "0", str(args.l2), idx_dir])
    for model in ("puresvd", "chol-lowrank"):
        for d in (int(x) for x in args.dims.split(",")):
            rows += run_child([args.data, model, str(d), str(args.l2), idx_dir])
            print(f"done {model} d={d}", file=sys.stderr, flush=True)
    report.write(args.out, {"l2": args.l2, "rows": rows}, markdown(rows, args.l2))


if __name__ == "__main__":
    main()
