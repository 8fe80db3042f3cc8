"""How good can Cholesky embeddings from SANSA's sparse approximate inverse be? (issue 25's first question)

The sparse route to Cholesky embeddings replaces P = (X^T X + l2 I)^-1 by SANSA's approximate inverse
P~ = W^T D^-1 W and factors beta D_P~ - P~. This probe factors P~ exactly (densely, so only on a
catalogue where N x N fits) and prunes the rows to k like the dense route: the Recall@20 / NDCG@20 it
reaches bound what any sparse factorization of the same P~ can reach. One row per SANSA factorizer and
width, beside SANSA's own scores from the same P~.

    python benchmarks/sparse_cholesky_probe.py --out reports/chol-sparse-probe --nnz-per-item 50,200 \\
        --factorizers icf,cholmod
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

import report  # benchmarks/, this script's directory
from arguments import amazon_book_parser

from sparseidx import Factors, Index, evaluate, load_interactions
from sparseidx.data import popularity
from sparseidx.models.cholesky import Cholesky, gram_order
from sparseidx.models.sansa import approximate_inverse


def probe(train, test, factorizer: str, nnz_per_item: int, l2: float, k: int) -> dict:
    """SANSA's P~ at this width, then its scores and the Cholesky embeddings of beta D_P~ - P~."""
    X = sp.csr_matrix(train.X, dtype=np.float64)
    n = X.shape[1]
    t0 = time.perf_counter()
    settings = SimpleNamespace(l2=l2, factorizer=factorizer, memory_budget_gib=4.0, density=None,
                               nnz_per_item=nnz_per_item, scans=1, finetune_steps=5, finetune_width="wide")
    W, D, _ = approximate_inverse(X, settings)
    Wd = sp.csr_matrix(sp.diags(1.0 / D) @ W)
    P = (W.T @ Wd).tocsr()
    inverse_seconds = time.perf_counter() - t0
    diag = P.diagonal()
    sansa = Factors(encoder=W.T, embeddings=-(Wd @ sp.diags(1.0 / diag)).T, priors=np.ones(n), item_ids=train.item_ids)
    counts = popularity(X)
    perm = gram_order(None, counts, "popularity", n)
    buf = np.ascontiguousarray(P[perm][:, perm].toarray(), dtype=np.float32)
    chol = Cholesky(l2=l2, k=k)._factor(buf, diag[perm].astype(np.float32), perm, counts, train.item_ids, t0)
    row = {"factorizer": factorizer, "nnz_per_item": nnz_per_item, "l2": l2, "k": k,
           "inverse_seconds": inverse_seconds, "p_nnz_per_item": P.nnz / n}
    for name, factors in (("sansa", sansa), ("chol", chol)):
        metrics = evaluate(Index.build(factors), train, test)
        row[f"{name}_recall@20"], row[f"{name}_ndcg@20"] = metrics["recall@20"], metrics["ndcg@20"]
        row[f"{name}_nnz_per_item"] = factors.embeddings.nnz / n
    return row


def main() -> None:
    ap = amazon_book_parser(__doc__, "reports/chol-sparse-probe", 200.0)
    ap.add_argument("--nnz-per-item", default="50,200", help="SANSA widths, comma-separated")
    ap.add_argument("--factorizers", default="icf,cholmod")
    ap.add_argument("-k", type=int, default=200, help="non-zeros kept per Cholesky row")
    args = ap.parse_args()
    train = load_interactions(f"{args.data}/train.txt")
    test = load_interactions(f"{args.data}/test.txt", item_ids=train.item_ids, skip_unknown=True)
    rows = [probe(train, test, f, int(m), args.l2, args.k)
            for f in args.factorizers.split(",") for m in args.nnz_per_item.split(",")]
    cells = [[r["factorizer"], f"{r['nnz_per_item']}", f"{r['p_nnz_per_item']:,.0f}", f"{r['inverse_seconds']:.0f}",
              f"{r['sansa_recall@20']:.4f}", f"{r['sansa_ndcg@20']:.4f}", f"{r['chol_recall@20']:.4f}",
              f"{r['chol_ndcg@20']:.4f}", f"{r['chol_nnz_per_item']:.0f}"] for r in rows]
    head = ["SANSA factorizer", "nnz/item of W", "nnz/item of P~", "P~ s", "SANSA Recall@20", "SANSA NDCG@20",
            f"Cholesky of P~ (k={args.k}) Recall@20", "NDCG@20", "Cholesky nnz/item"]
    text = "\n".join([f"## Cholesky embeddings of SANSA's P~ on amazon-book (l2={args.l2:g}, factored exactly)", "",
                      *report.table(head, cells)]) + "\n"
    report.write(args.out, {"args": vars(args), "rows": rows}, text)


if __name__ == "__main__":
    main()
