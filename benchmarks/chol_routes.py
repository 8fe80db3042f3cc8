"""Cholesky embeddings by the dense and the sparse route, beside SANSA at equal non-zeros per item (issue 25).

Each model is built by ``sparseidx build`` in its own process (its peak RSS is that process's) and
scored by ``sparseidx evaluate`` on the amazon-book split: the dense route (the N x N inverse), the
sparse route on SANSA's inverse from the exact CHOLMOD factor and from the incomplete one (ICF),
each at k=200 non-zeros per row, and SANSA itself at 200 non-zeros per item with both factorizers.

    python benchmarks/chol_routes.py --out reports/chol-routes
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import report  # benchmarks/, this script's directory
from arguments import amazon_book_parser
from peak import run_measured

K = "200"
MODELS = (
    ("Cholesky, dense route", ["--model", "chol", "--route", "dense", "--k", K]),
    ("Cholesky, sparse route, exact-factor inverse", ["--model", "chol", "--route", "sparse", "--factorizer",
                                                      "cholmod", "--k", K]),
    ("Cholesky, sparse route, ICF inverse", ["--model", "chol", "--route", "sparse", "--factorizer", "icf",
                                             "--k", K]),
    ("SANSA, exact factor", ["--model", "sansa", "--factorizer", "cholmod", "--nnz-per-item", K]),
    ("SANSA, ICF", ["--model", "sansa", "--factorizer", "icf", "--nnz-per-item", K]),
)


def sparseidx(*args: str) -> tuple[dict, float]:
    """(JSON output, peak RSS GiB) of one ``sparseidx`` command."""
    output, peak_mib = run_measured([os.path.join(os.path.dirname(sys.executable), "sparseidx"), "-q", *args,
                                     "--json"])
    return json.loads(output), peak_mib / 1024


def main() -> None:
    ap = amazon_book_parser(__doc__, "reports/chol-routes", 200.0)
    args = ap.parse_args()
    train, test = os.path.join(args.data, "train.txt"), os.path.join(args.data, "test.txt")
    rows = []
    with tempfile.TemporaryDirectory(prefix="chol-routes-") as tmp:
        for name, options in MODELS:
            l2 = str(args.l2) if "chol" in options else "20"  # SANSA at its own default
            out = os.path.join(tmp, f"{len(rows)}.idx")
            t0 = time.perf_counter()
            built, rss = sparseidx("build", train, *options, "--l2", l2, "--out", out)
            seconds = time.perf_counter() - t0
            metrics, _ = sparseidx("evaluate", out, "--train", train, "--test", test)
            info, _ = sparseidx("info", out)
            rows.append({"model": name, "options": options + ["--l2", l2], "build_seconds": seconds,
                         "peak_rss_gib": rss, "nnz_per_item": info["nnz_embeddings"] / info["n_items"],
                         "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"],
                         "params": built["params"]})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "params"}), file=sys.stderr, flush=True)
    dense = rows[0]
    cells = [[r["model"], " ".join(r["options"]), f"{r['nnz_per_item']:.0f}", f"{r['recall@20']:.4f}",
              f"{r['ndcg@20']:.4f}", f"{r['recall@20'] / dense['recall@20'] - 1:+.1%} / "
              f"{r['ndcg@20'] / dense['ndcg@20'] - 1:+.1%}", f"{r['build_seconds']:.0f}",
              f"{r['peak_rss_gib']:.1f}"] for r in rows]
    text = "\n".join([f"## Cholesky routes and SANSA on amazon-book (k = nnz per item = {K})", "",
                      *report.table(["model", "options", "nnz/item of V", "Recall@20", "NDCG@20",
                                     "vs dense route (R / N)", "build s", "peak RSS GiB"], cells)]) + "\n"
    report.write(args.out, {"args": vars(args), "rows": rows}, text)


if __name__ == "__main__":
    main()
