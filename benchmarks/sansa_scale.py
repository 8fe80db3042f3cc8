"""Issue 5 scale figure: SANSA (ICF, 50 non-zeros per item) on a synthetic power-law catalogue.

Generates (seeded, vectorised) ``--users`` users with about ``--per-user`` interactions
each over ``--items`` items whose popularity follows a Zipf law, trains SANSA with
the incomplete-Cholesky factorizer, and reports time, peak memory and non-zeros.
The default is the issue's size: 1,000,000 items, 2,000,000 users, ~20 each.

    python benchmarks/sansa_scale.py --out reports/sansa-scale
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import scipy.sparse as sp

from sparseidx.files import write_text


def power_law_interactions(n_users: int, n_items: int, per_user: float, exponent: float, seed: int) -> sp.csr_matrix:
    """A binary users x items matrix: history lengths 1 + Poisson(per_user - 1), items ~ Zipf(exponent)."""
    rng = np.random.default_rng(seed)
    lengths = 1 + rng.poisson(per_user - 1, n_users)
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    items = np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right").astype(np.int32)
    items = rng.permutation(n_items).astype(np.int32)[items]  # popular items anywhere in the id space
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    X = sp.csr_matrix((np.ones(len(items), dtype=np.float32), items, indptr), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/sansa-scale")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--per-user", type=float, default=20.0)
    ap.add_argument("--exponent", type=float, default=0.8)
    ap.add_argument("--nnz-per-item", type=int, default=50)
    ap.add_argument("--l2", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sparseidx.models.sansa import fit_sansa
    from sparseidx.progress import enable

    enable(1)
    t0 = time.perf_counter()
    X = power_law_interactions(args.users, args.items, args.per_user, args.exponent, args.seed)
    gen = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t1 = time.perf_counter()
    f = fit_sansa(X, l2=args.l2, factorizer="icf", nnz_per_item=args.nnz_per_item)
    fit = time.perf_counter() - t1
    result = {"items": args.items, "users": args.users, "interactions": int(X.nnz),
              "items_with_interactions": int((np.diff(X.tocsc().indptr) > 0).sum()),
              "generate_seconds": gen, "fit_seconds": fit, "peak_rss_gib_after_data": rss_data,
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
              "nnz_encoder": int(f.encoder.nnz), "nnz_decoder": int(f.embeddings.nnz),
              "params": {k: v for k, v in f.params.items()}}
    os.makedirs(args.out, exist_ok=True)
    write_text(os.path.join(args.out, "report.json"), json.dumps(result, indent=2))
    table = (f"## SANSA ICF at {args.nnz_per_item} non-zeros per item on a synthetic power-law catalogue\n\n"
             "| items | users | interactions | fit s | peak RSS GiB | nnz(E) | nnz(V) | ICF shift | final UMR loss |\n"
             "|---|---|---|---|---|---|---|---|---|\n"
             f"| {args.items:,} | {args.users:,} | {X.nnz:,} | {fit:.0f} | {result['peak_rss_gib']:.1f} | "
             f"{f.encoder.nnz:,} | {f.embeddings.nnz:,} | {f.params['icf_shift']:g} | "
             f"{f.params['umr_losses'][-1]:.2e} |\n")
    write_text(os.path.join(args.out, "report.md"), table)
    print(table)


if __name__ == "__main__":
    main()
