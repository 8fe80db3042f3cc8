"""Issue 7 figures: dense ELSA vs Compressed ELSA at equal bytes per item (dense 4 B/dim, sparse 8 B/non-zero).

For every dense size d, Compressed ELSA keeps d/2 non-zeros per item (same bytes);
the dense model 10x larger than the smallest is the third reference point. Each model
trains in its own child process; Recall@20 / NDCG@20 come from the same index and
metric code (FAISS Flat for dense ELSA, the sparse index for Compressed ELSA).

    python benchmarks/elsa.py --data examples/amazon-book --out reports/elsa \\
        [--dense 32,64 --celsa-dims 1024 --epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import report  # benchmarks/, this script's directory


def child(data: str, model: str, dims: int, nnz: int, epochs: int, batch: int, lr: float) -> dict:
    from sparseidx import Index, evaluate
    from sparseidx.data import load_interactions
    from sparseidx.index.dense import DenseIndex
    from sparseidx.models.elsa import fit_compressed_elsa, fit_elsa

    train = load_interactions(os.path.join(data, "train.txt"))
    t0 = time.perf_counter()
    if model == "elsa":
        factors = fit_elsa(train, dims=dims, epochs=epochs, batch_size=batch, lr=lr)
        index = DenseIndex.build(factors, "Flat")
        bytes_per_item = 4 * dims
    else:
        factors = fit_compressed_elsa(train, dims=dims, nnz_per_item=nnz, epochs=epochs, batch_size=batch, lr=lr)
        index = Index.build(factors)
        bytes_per_item = 8 * nnz
    seconds = time.perf_counter() - t0
    m = evaluate(index, train, os.path.join(data, "test.txt"), ks=(20,))
    return {"model": model, "dims": dims, "nnz_per_item": nnz if model == "celsa" else dims,
            "bytes_per_item": bytes_per_item, "fit_seconds": seconds, "epochs": epochs,
            "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        data, model, dims, nnz, epochs, batch, lr = sys.argv[2:9]
        print(json.dumps(child(data, model, int(dims), int(nnz), int(epochs), int(batch), float(lr))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="examples/amazon-book")
    ap.add_argument("--out", default="reports/elsa")
    ap.add_argument("--dense", default="32,64", help="dense ELSA sizes d (Compressed ELSA gets d/2 non-zeros)")
    ap.add_argument("--celsa-dims", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()
    sizes = [int(d) for d in args.dense.split(",")]
    jobs = [("elsa", d, d) for d in sizes] + [("celsa", args.celsa_dims, d // 2) for d in sizes]
    jobs.append(("elsa", 10 * sizes[0], 10 * sizes[0]))  # the dense model 10x larger
    rows = []
    for model, dims, nnz in jobs:
        out = subprocess.run([sys.executable, __file__, "_child", args.data, model, str(dims), str(nnz),
                              str(args.epochs), str(args.batch_size), str(args.lr)],
                             check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [f"## ELSA vs Compressed ELSA ({args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g})", "",
             *report.table(["model", "dims", "nnz/item", "bytes/item", "Recall@20", "NDCG@20", "fit s"],
                           [[r["model"], r["dims"], r["nnz_per_item"], r["bytes_per_item"], f"{r['recall@20']:.4f}",
                             f"{r['ndcg@20']:.4f}", f"{r['fit_seconds']:.0f}"] for r in rows])]
    report.write(args.out, {"args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
