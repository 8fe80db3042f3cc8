"""Issue 5 figures: sparseidx's SANSA next to the reference PyPI package ``sansa==1.1.0``, in one run.

Same data, l2, densities, UMR scans and finetune steps for both; each training runs
in its own child process (time and peak RSS are its own), after a warm-up fit on
2,000 users in that process so that neither pays for JIT compilation or cold caches. Quality is measured the
same way for both: the reference's weights (W^T, W_r) are put in the one shape
(E = W^T, V = W_r^T, priors 1) and evaluated by the same index and metric code.
Needs the benchmark extra (pip install 'sparseidx[bench]').

    python benchmarks/sansa_vs_reference.py --data examples/amazon-book --out reports/sansa
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import report  # benchmarks/, this script's directory
from arguments import amazon_book_parser


def fit(impl: str, X, factorizer: str, density: float, l2: float, scans: int, finetune: int):
    """(encoder, item embeddings, params) of one implementation, both in the one shape."""
    if impl == "sparseidx":
        from sparseidx.models.sansa import fit_sansa

        f = fit_sansa(X, l2=l2, factorizer=factorizer, density=density, scans=scans, finetune_steps=finetune)
        return f.encoder, f.embeddings, f.params
    import sansa

    fcfg = sansa.ICFGramianFactorizerConfig() if factorizer == "icf" else sansa.CHOLMODGramianFactorizerConfig()
    config = sansa.SANSAConfig(l2=l2, weight_matrix_density=density, gramian_factorizer_config=fcfg,
                               lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
                                   scans=scans, finetune_steps=finetune))
    encoder, decoder = sansa.SANSA(config).fit(X).weights
    return encoder, decoder.T, {}


def child(impl: str, data: str, factorizer: str, density: float, l2: float, scans: int, finetune: int) -> dict:
    import numpy as np

    from sparseidx import Factors, Index, evaluate
    from sparseidx.data import load_interactions
    from sparseidx.openblas import pinned_openblas

    with pinned_openblas():  # both implementations' CHOLMOD on the same OpenBLAS kernels: see sparseidx/openblas.py
        import sksparse.cholmod  # noqa: F401
    train = load_interactions(os.path.join(data, "train.txt"))
    sample = train.X[:2000]
    sample = sample[:, np.flatnonzero(sample.getnnz(axis=0))]  # the reference cannot fit items nobody touched
    fit(impl, sample, factorizer, density, l2, scans, finetune)  # warm-up: JIT compilation is not timed
    t0 = time.perf_counter()
    encoder, decoder, params = fit(impl, train.X, factorizer, density, l2, scans, finetune)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    factors = Factors(encoder=encoder, embeddings=decoder, priors=np.ones(train.n_items), item_ids=train.item_ids,
                      model=f"sansa-{impl}", params=params, popularity=np.asarray(train.X.sum(axis=0)).ravel())
    metrics = evaluate(Index.build(factors), train, os.path.join(data, "test.txt"), ks=(20,))
    return {"impl": impl, "factorizer": factorizer, "density": density, "fit_seconds": seconds,
            "peak_rss_gib": peak / 2**30, "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"],
            "nnz_encoder": int(factors.encoder.nnz), "nnz_decoder": int(factors.embeddings.nnz),
            "params": {k: v for k, v in factors.params.items() if k != "umr_losses"}}


def run_child(args: list[str], timeout: float) -> dict:
    try:
        out = subprocess.run([sys.executable, __file__, "_child", *args], check=True, stdout=subprocess.PIPE,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": args[0], "factorizer": args[2], "density": float(args[3]), "error": f"timeout {timeout:.0f} s"}
    except subprocess.CalledProcessError as exc:
        return {"impl": args[0], "factorizer": args[2], "density": float(args[3]), "error": f"exit {exc.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], l2: float) -> str:
    ref = {(r["factorizer"], r["density"]): r for r in rows if r["impl"] == "reference" and "error" not in r}
    cells = []
    for r in rows:
        row = [r["factorizer"], f"{r['density']:g}", r["impl"]]
        if "error" in r:
            cells.append(row + [r["error"], "", "", "", "", "", ""])
            continue
        base = ref.get((r["factorizer"], r["density"]))
        rel = [f"{r['recall@20'] - base['recall@20']:+.4f}", f"{r['fit_seconds'] / base['fit_seconds']:.2f}",
               f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}"] if base and r["impl"] != "reference" else ["", "", ""]
        cells.append(row + [f"{r['recall@20']:.4f}", f"{r['ndcg@20']:.4f}", f"{r['fit_seconds']:.1f}",
                            f"{r['peak_rss_gib']:.2f}", *rel])
    lines = [f"## SANSA on amazon-book: sparseidx vs sansa==1.1.0 (l2={l2:g})", "",
             *report.table(["factorizer", "density", "impl", "Recall@20", "NDCG@20", "fit s", "peak RSS GiB",
                            "ΔRecall vs ref", "time ratio", "memory ratio"], cells)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        impl, data, factorizer, density, l2, scans, finetune = sys.argv[2:9]
        print(json.dumps(child(impl, data, factorizer, float(density), float(l2), int(scans), int(finetune))))
        return
    ap = amazon_book_parser(__doc__, "reports/sansa", 20.0)
    ap.add_argument("--densities", default="5e-5,5e-4")
    ap.add_argument("--factorizers", default="icf,cholmod")
    ap.add_argument("--scans", type=int, default=1)
    ap.add_argument("--finetune-steps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per training")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for factorizer in args.factorizers.split(","):
        for density in args.densities.split(","):
            for impl in ("reference", "sparseidx"):
                rows.append(run_child([impl, args.data, factorizer, density, str(args.l2), str(args.scans),
                                       str(args.finetune_steps)], args.timeout))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report.write(args.out, {"l2": args.l2, "rows": rows}, markdown(rows, args.l2))


if __name__ == "__main__":
    main()
