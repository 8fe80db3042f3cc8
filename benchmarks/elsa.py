"""Dense ELSA vs Compressed ELSA at equal bytes per item (dense 4 B/dim, sparse 8 B/non-zero), and Compressed
ELSA's two training recipes (short: the library's ``epochs`` epochs; reference: the authors' code).

For every size in ``--bytes``, dense ELSA gets bytes/4 dims and every Compressed ELSA recipe
bytes/8 non-zeros per item out of ``--celsa-dims``; ``--dense-10x`` adds the dense model ten
times the smallest. Each model trains in its own child process; Recall@20 / NDCG@20 come from
the same index and metric code (FAISS Flat for dense ELSA, the sparse index for Compressed ELSA).

    python benchmarks/elsa.py --data examples/amazon-book --out reports/elsa/recipes \\
        --bytes 128,256 --recipes short,reference --no-dense
    python benchmarks/elsa.py --out reports/elsa/4096 --celsa-dims 4096 --bytes 128 --recipes short --no-dense
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


def child(data: str, job: dict) -> dict:
    from sparseidx import Index, evaluate
    from sparseidx.data import load_interactions
    from sparseidx.index.dense import DenseIndex
    from sparseidx.models.elsa import fit_compressed_elsa, fit_elsa

    train = load_interactions(os.path.join(data, "train.txt"))
    t0 = time.perf_counter()
    common = {"epochs": job["epochs"], "batch_size": job["batch_size"], "lr": job["lr"]}
    if job["model"] == "elsa":
        factors = fit_elsa(train, dims=job["dims"], **common)
        index = DenseIndex.build(factors, "Flat")
    else:
        factors = fit_compressed_elsa(train, dims=job["dims"], nnz_per_item=job["nnz"], recipe=job["recipe"],
                                      max_output=job["max_output"], **common)
        index = Index.build(factors)
    seconds = time.perf_counter() - t0
    m = evaluate(index, train, os.path.join(data, "test.txt"), ks=(20,))
    return {**job, "fit_seconds": seconds, "epochs_trained": len(factors.params["losses"]),
            "final_loss": factors.params["losses"][-1], "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="examples/amazon-book")
    ap.add_argument("--out", default="reports/elsa")
    ap.add_argument("--bytes", default="128,256", help="bytes per item of every model compared")
    ap.add_argument("--no-dense", action="store_true", help="leave out dense ELSA")
    ap.add_argument("--dense-10x", action="store_true", help="add dense ELSA ten times the smallest size")
    ap.add_argument("--recipes", default="short", help="Compressed ELSA recipes: short, reference or both")
    ap.add_argument("--celsa-dims", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--max-output", type=int, default=20000,
                    help="output columns per batch of the reference recipe (its README's value)")
    args = ap.parse_args()
    sizes = [int(b) for b in args.bytes.split(",")]
    common = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    jobs = [] if args.no_dense else [{"model": "elsa", "dims": b // 4, **common} for b in sizes]
    if args.dense_10x:
        jobs.append({"model": "elsa", "dims": 10 * sizes[0] // 4, **common})
    for name in args.recipes.split(","):
        jobs += [{"model": "celsa", "recipe": name, "dims": args.celsa_dims, "nnz": b // 8,
                  "max_output": args.max_output if name == "reference" else 0, **common} for b in sizes]
    rows = []
    for job in jobs:
        out = subprocess.run([sys.executable, __file__, "_child", args.data, json.dumps(job)],
                             check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [f"## ELSA and Compressed ELSA (epochs {args.epochs}, batch {args.batch_size}, lr {args.lr:g})", "",
             *report.table(["model", "recipe", "dims", "nnz/item", "bytes/item", "epochs trained", "Recall@20",
                            "NDCG@20", "fit s", "peak GiB"],
                           [[r["model"], r.get("recipe", "-"), r["dims"], r.get("nnz", r["dims"]),
                             8 * r["nnz"] if r["model"] == "celsa" else 4 * r["dims"], r["epochs_trained"],
                             f"{r['recall@20']:.4f}", f"{r['ndcg@20']:.4f}", f"{r['fit_seconds']:.0f}",
                             f"{r['peak_rss_gib']:.1f}"] for r in rows])]
    report.write(args.out, {"args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
