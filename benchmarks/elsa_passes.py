"""Seconds per training batch of Compressed ELSA: dense passes (rows as dims-wide arrays, BLAS) against
sparse passes (rows as k non-zeros each), one batch of amazon-book users, loss + gradient + NAdam step.

Where the two cross decides when training switches to sparse passes (``SPARSE_BELOW``).

    python benchmarks/elsa_passes.py --data examples/amazon-book --dims 1024,4096 --out reports/elsa/passes
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import report  # benchmarks/, this script's directory
import scipy.sparse as sp


def seconds(step, rounds: int) -> float:
    """Median seconds of ``step`` over ``rounds`` runs after one warm-up run."""
    step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from sparseidx.data import load_interactions
    from sparseidx.models._elsa_training import (NAdam, ell_loss_and_gradient, entries_by_dimension,
                                                 loss_and_gradient, output_columns)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="examples/amazon-book")
    ap.add_argument("--dims", default="1024,4096")
    ap.add_argument("--fractions", default="4,8,16,64", help="k = dims / fraction for the sparse passes")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--max-output", type=int, default=0, help="output columns per batch (0: every item)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="reports/elsa/passes")
    args = ap.parse_args()
    X = sp.csr_matrix(load_interactions(os.path.join(args.data, "train.txt")).X, dtype=np.float32)
    rng = np.random.default_rng(0)
    n = X.shape[1]
    Xb = X[rng.permutation(X.shape[0])[:args.batch_size]]
    columns, weights = output_columns(Xb, n, args.max_output, rng)
    clip, mean = (6.0, True) if args.max_output else (0.0, False)
    rows = []
    for dims in (int(d) for d in args.dims.split(",")):
        A = rng.standard_normal((n, dims)).astype(np.float32)
        opt = NAdam(A.shape, 0.1)

        def dense():
            opt.step(A, loss_and_gradient(A, Xb, columns, weights, clip, mean)[1])

        dense_s = seconds(dense, args.rounds)
        for fraction in (int(f) for f in args.fractions.split(",")):
            k = dims // fraction
            cols = np.sort(rng.random((n, dims)).argpartition(k - 1, axis=1)[:, :k], axis=1).astype(np.int32)
            vals = rng.standard_normal((n, k)).astype(np.float32)
            by_dim, ell_opt = entries_by_dimension(cols, dims), NAdam(vals.shape, 0.1)

            def sparse():
                ell_opt.step(vals, ell_loss_and_gradient(cols, vals, Xb, dims, columns, weights, clip, mean,
                                                         by_dim)[1])

            sparse_s = seconds(sparse, args.rounds)
            rows.append({"dims": dims, "k": k, "dense_s": dense_s, "sparse_s": sparse_s})
            print(rows[-1], flush=True)
    lines = [f"## Seconds per batch of {args.batch_size} users (median of {args.rounds}; "
             f"output columns: {args.max_output or 'every item'})", "",
             *report.table(["dims", "k (non-zeros per item)", "dense passes s", "sparse passes s", "sparse / dense"],
                           [[r["dims"], f"{r['k']} (dims/{r['dims'] // r['k']})", f"{r['dense_s']:.3f}",
                             f"{r['sparse_s']:.3f}", f"{r['sparse_s'] / r['dense_s']:.2f}"] for r in rows])]
    report.write(args.out, {"args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
