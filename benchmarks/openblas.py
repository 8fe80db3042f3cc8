"""The cost of an OpenBLAS that does not know the CPU: faiss and CHOLMOD with and without the pin.

Each library is timed in child processes, in turn, under the kernels its own OpenBLAS
picks ("as loaded": faiss or sksparse imported directly, no sparseidx in between) and
under OPENBLAS_CORETYPE set to what ``sparseidx.openblas`` would choose ("pinned").
OPENBLAS_VERBOSE=2 reports which kernels each OpenBLAS chose. Work: FAISS IndexFlatIP
search, 5,000 random queries against 24,915 random vectors of 256 dims, on 1 and 2
threads (best of 3 runs each); CHOLMOD's supernodal factorization of X^T X + l2 I of the
training data under its COLAMD ordering (one run; the same call SANSA's CHOLMOD route makes).

    python benchmarks/openblas.py --data examples/amazon-book --out reports/openblas
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import report  # benchmarks/, this script's directory
from arguments import amazon_book_parser

from sparseidx.openblas import cpu_flags, openblas_core


def faiss_child() -> dict:
    import faiss
    import numpy as np

    rng = np.random.default_rng(0)
    index = faiss.IndexFlatIP(256)
    index.add(rng.standard_normal((24_915, 256)).astype(np.float32))
    queries = rng.standard_normal((5_000, 256)).astype(np.float32)
    qps = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            index.search(queries, 20)
            best = min(best, time.perf_counter() - t0)
        qps[f"qps_{threads}t"] = queries.shape[0] / best
    return qps


def cholmod_child(data: str, l2: float) -> dict:
    import numpy as np
    import scipy.sparse as sp
    from sksparse import cholmod

    from sparseidx.data import load_interactions

    X = load_interactions(os.path.join(data, "train.txt")).X
    Xt = sp.csc_matrix(X.T, dtype=np.float64)
    factor = cholmod.analyze_AAt(Xt, mode="supernodal", ordering_method="colamd")
    t0 = time.perf_counter()
    factor.cholesky_AAt_inplace(Xt, beta=l2)
    return {"seconds": time.perf_counter() - t0}


def run_child(work: str, core: str | None, data: str, l2: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_VERBOSE"] = "2"
    if core is not None:
        env["OPENBLAS_CORETYPE"] = core
    out = subprocess.run([sys.executable, __file__, "_child", work, data, str(l2)], env=env, check=True,
                         capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    # the library's own OpenBLAS loads last (numpy's, loaded first, reports too)
    row["kernels"] = re.findall(r"^Core: (\S+)$", out.stdout + out.stderr, flags=re.MULTILINE)[-1:]
    return {"work": work, "openblas": f"pinned ({core})" if core else "as loaded", **row}


def markdown(rows: list[dict]) -> str:
    cells = [[r["work"], r["openblas"], ", ".join(r["kernels"]) or "-",
              f"{r['qps_1t']:,.0f} QPS 1 thread, {r['qps_2t']:,.0f} QPS 2 threads" if r["work"] == "faiss"
              else f"{r['seconds']:.1f} s"] for r in rows]
    lines = ["## OpenBLAS kernels as loaded vs pinned to the CPU", "",
             *report.table(["work", "OpenBLAS", "kernels", "result"], cells)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        work, data, l2 = sys.argv[2:5]
        print(json.dumps(faiss_child() if work == "faiss" else cholmod_child(data, float(l2))))
        return
    ap = amazon_book_parser(__doc__, "reports/openblas", 20.0)
    args = ap.parse_args()
    core = openblas_core(cpu_flags())
    if core is None:
        sys.exit("this CPU has no AVX2: sparseidx pins nothing, so there is nothing to compare")
    rows = [run_child(work, c, args.data, args.l2) for work in ("faiss", "cholmod") for c in (None, core)]
    report.write(args.out, {"l2": args.l2, "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
