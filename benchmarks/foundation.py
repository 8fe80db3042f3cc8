"""Issue 2 figures on amazon-book: dense EASE vs Cholesky embeddings (k=200), side by side.

Each model is trained in its own child process so that time and peak memory are
per model. Writes report.json and report.md to OUT.

    python benchmarks/foundation.py --data examples/amazon-book --out reports/foundation [--l2 200]
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


def ease_child(data: str, l2: float) -> dict:
    from sparseidx.bench.timing import peak_rss_bytes
    from sparseidx.data import load_interactions
    from sparseidx.evaluate import ranking_metrics
    from sparseidx.models.cholesky import ease_weights

    train = load_interactions(os.path.join(data, "train.txt"))
    t0 = time.perf_counter()
    B = ease_weights(train, l2)
    fit = time.perf_counter() - t0
    test = load_interactions(os.path.join(data, "test.txt"), item_ids=train.item_ids, user_ids=train.user_ids,
                             skip_unknown=True)
    users = np.flatnonzero(np.diff(test.X.indptr) > 0)
    sums = {"recall@20": 0.0, "ndcg@20": 0.0}
    for s in range(0, len(users), 2048):
        u = users[s: s + 2048]
        H = train.X[u]
        S = np.asarray(H @ B)
        S[H.nonzero()] = -np.inf
        top = np.argpartition(-S, 20, axis=1)[:, :20]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), axis=1, kind="stable"), 1)
        m = ranking_metrics(top, test.X[u], ks=(20,))
        for key in sums:
            sums[key] += m[key].sum()
    return {"model": "EASE (dense)", "fit_seconds": fit, "peak_rss_gib": peak_rss_bytes() / 2**30,
            "recall@20": sums["recall@20"] / len(users), "ndcg@20": sums["ndcg@20"] / len(users),
            "users": int(len(users)), "model_bytes": int(B.nbytes)}


def chol_child(data: str, l2: float, k: int, out: str) -> dict:
    import scipy.sparse as sp

    from sparseidx import Index, evaluate, fit_cholesky
    from sparseidx.bench.timing import batch_throughput, peak_rss_bytes, single_query_latency
    from sparseidx.data import load_interactions
    from sparseidx.index import format as fmt

    train = load_interactions(os.path.join(data, "train.txt"))
    t0 = time.perf_counter()
    factors = fit_cholesky(train, l2=l2, k=k)
    fit = time.perf_counter() - t0
    path = os.path.join(out, f"chol-k{k}.idx")
    t1 = time.perf_counter()
    Index.build(factors).write(path, overwrite=True)
    index_build = time.perf_counter() - t1
    peak = peak_rss_bytes()
    index = Index.open(path)
    metrics = evaluate(index, train, os.path.join(data, "test.txt"), ks=(20,))
    test = load_interactions(os.path.join(data, "test.txt"), user_ids=train.user_ids, skip_unknown=True)
    users = np.flatnonzero(np.diff(test.X.indptr) > 0)
    H = sp.csr_matrix(train.X[users])
    rng = np.random.default_rng(0)
    sample = H[rng.choice(H.shape[0], 2000, replace=False)]
    lat = single_query_latency(index, sample, 20)
    one = batch_throughput(index, H, 20, threads=1, repeat=1)
    two = batch_throughput(index, H, 20, threads=2, repeat=1)
    return {"model": f"Cholesky k={k}", "fit_seconds": fit, "index_seconds": index_build, "peak_rss_gib": peak / 2**30,
            "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"], "coverage": metrics["coverage"],
            "users": metrics["users"], "beta": factors.params["beta"], "index_bytes": fmt.index_bytes(index.manifest),
            "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "postings_per_query": lat["postings_per_query"],
            "qps_1_thread": one["qps"], "qps_2_threads": two["qps"]}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(row: dict, key: str, fmt: str) -> str:
    """A formatted value, or '-' where the model is not served (dense EASE has no index)."""
    return fmt.format(row[key]) if key in row else "-"


def markdown(rows: list[dict], l2: float) -> str:
    ease = rows[0]
    head = ["model", "Recall@20", "NDCG@20", "vs EASE (R / N)", "fit s", "peak RSS GiB", "size MB", "p50 us",
            "p99 us", "postings/query", "qps 1 thr", "qps 2 thr"]
    cells = [[r["model"], f"{r['recall@20']:.4f}", f"{r['ndcg@20']:.4f}",
              f"{r['recall@20'] / ease['recall@20'] - 1:+.2%} / {r['ndcg@20'] / ease['ndcg@20'] - 1:+.2%}",
              f"{r['fit_seconds']:.1f}", f"{r['peak_rss_gib']:.2f}",
              f"{r.get('index_bytes', r.get('model_bytes', 0)) / 1e6:.0f}", _cell(r, "p50_us", "{:.0f}"),
              _cell(r, "p99_us", "{:.0f}"), _cell(r, "postings_per_query", "{:,.0f}"),
              _cell(r, "qps_1_thread", "{:,.0f}"), _cell(r, "qps_2_threads", "{:,.0f}")] for r in rows]
    lines = [f"## Dense EASE vs Cholesky embeddings on amazon-book (l2={l2:g}, all items ranked, train items masked)",
             "", *report.table(head, cells)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind = sys.argv[2]
        result = ease_child(sys.argv[3], float(sys.argv[4])) if kind == "ease" else chol_child(
            sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        print(json.dumps(result))
        return
    ap = amazon_book_parser(__doc__, "reports/foundation", 200.0)
    ap.add_argument("--k", type=int, default=200)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = [run_child(["_child", "ease", args.data, str(args.l2)]),
            run_child(["_child", "chol", args.data, str(args.l2), str(args.k), args.out])]
    report.write(args.out, {"l2": args.l2, "k": args.k, "rows": rows}, markdown(rows, args.l2))


if __name__ == "__main__":
    main()
