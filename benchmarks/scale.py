"""SANSA (ICF, 50 non-zeros per item) or sparse-route Cholesky embeddings on a synthetic power-law catalogue:
time and peak memory per phase.

Generates (seeded, vectorised) ``--users`` training users with about ``--per-user`` interactions
each over ``--items`` items whose popularity follows a Zipf law, plus ``--heldout`` users of the
same law; trains SANSA with the incomplete-Cholesky factorizer (``--model sansa``) or Cholesky
embeddings by the sparse route on SANSA's ICF inverse of ``--nnz-per-item`` non-zeros per item, rows
cut to ``--k`` (``--model chol``); builds the index and evaluates
Recall@20 / NDCG@20 on the held-out users (80% of each history folded in, 20% to find). Each
phase the model logs (``stage``) gets its seconds and its peak RSS (sampled every 0.1 s). The
default is the 10^6-item size: 1,000,000 items, 2,000,000 users, ~20 each.

    python benchmarks/sansa_scale.py --out reports/sansa-scale
    python benchmarks/sansa_scale.py --items 200000 --users 400000 --out reports/sansa-scale/200k \\
        --before HEAD~1   # the same run on the code of another commit too, one after the other
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import scipy.sparse as sp

import report  # benchmarks/, this script's directory
from revision import export_revision

from sparseidx.files import write_text

HERE = os.path.dirname(os.path.abspath(__file__))


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


def rss_gib() -> float:
    """This process's resident set now."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 2**20


class Phases(logging.Handler):
    """Seconds and peak RSS of every stage the library logs ('X ...' then 'X done in N s')."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.open: dict[str, float] = {}
        self.rows: list[dict] = []
        self.guard = threading.Lock()  # not self.lock: logging.Handler holds that one around emit()
        self.stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stop.wait(0.1):
            now = rss_gib()
            with self.guard:
                for name in self.open:
                    self.open[name] = max(self.open[name], now)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        with self.guard:
            if " done in " in msg:
                name, _, rest = msg.partition(" done in ")
                if name in self.open:
                    self.rows.append({"phase": name, "seconds": float(rest.split()[0]),
                                      "peak_rss_gib": max(self.open.pop(name), rss_gib())})
            elif msg.endswith(" ...") and "elapsed" not in msg:
                self.open[msg[:-4]] = rss_gib()


def measure(args) -> dict:
    """Generate, fit, build, evaluate in this process; the figures as a dict."""
    from sparseidx.data import Interactions
    from sparseidx.evaluate import evaluate_heldout
    from sparseidx.index import Index
    from sparseidx.models.cholesky import fit_cholesky
    from sparseidx.models.sansa import fit_sansa
    from sparseidx.progress import enable, log

    enable(1)
    phases = Phases()
    log.addHandler(phases)
    t0 = time.perf_counter()
    X_all = power_law_interactions(args.users + args.heldout, args.items, args.per_user, args.exponent, args.seed)
    X, held = X_all[: args.users], X_all[args.users:]
    del X_all
    gen = time.perf_counter() - t0
    rss_data = rss_gib()
    t1 = time.perf_counter()
    if args.model == "chol":
        f = fit_cholesky(X, l2=args.l2, k=args.k, route="sparse", factorizer="icf",
                         inverse_nnz_per_item=args.nnz_per_item)
        inverse = {key[len("inverse_"):]: value for key, value in f.params.items() if key.startswith("inverse_")}
    else:
        f = fit_sansa(X, l2=args.l2, factorizer="icf", nnz_per_item=args.nnz_per_item)
        inverse = f.params
    fit = time.perf_counter() - t1
    fit_peak = max([r["peak_rss_gib"] for r in phases.rows] + [rss_gib()])
    n_train = int(X.nnz)
    del X
    t2 = time.perf_counter()
    index = Index.build(f)
    build = time.perf_counter() - t2
    ids = np.arange(args.items)
    heldout = Interactions(held, np.arange(held.shape[0]), ids, "synthetic held-out users")
    metrics = evaluate_heldout(index, heldout, fold_in=0.8, seed=args.seed, ks=(20,))  # exact search
    phases.stop.set()
    if args.save:
        save(args.save, index, held, args.seed)
    return {"items": args.items, "users": args.users, "interactions": n_train,
            "items_with_interactions": int((f.popularity > 0).sum()),
            "generate_seconds": gen, "fit_seconds": fit, "index_build_seconds": build,
            "peak_rss_gib_after_data": rss_data, "peak_rss_gib_fit": fit_peak, "phases": phases.rows,
            "nnz_encoder": int(f.encoder.nnz), "nnz_decoder": int(f.embeddings.nnz),
            "umr_losses": inverse["umr_losses"], "icf_shift": inverse["icf_shift"], "model": args.model,
            "params": f.params,
            "heldout": {k: metrics[k] for k in ("users", "recall@20", "ndcg@20")},
            "code": subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty=+changes"],
                                   capture_output=True, text=True).stdout.strip()}


def save(directory: str, index, held: sp.csr_matrix, seed: int) -> None:
    """The index and the held-out users' fold-in / test histories (``user item ...`` lines), for
    ``sparseidx bench DIR/index.idx --train DIR/heldout-train.txt --test DIR/heldout-test.txt``."""
    from sparseidx.evaluate import split_fold_in

    os.makedirs(directory, exist_ok=True)
    index.write(os.path.join(directory, "index.idx"), overwrite=True)
    for name, part in zip(("heldout-train.txt", "heldout-test.txt"), split_fold_in(held, 0.8, seed)):
        with open(os.path.join(directory, name), "w") as fh:
            for u in np.flatnonzero(np.diff(part.indptr)):
                fh.write(" ".join(map(str, [u, *part.indices[part.indptr[u]: part.indptr[u + 1]]])) + "\n")


def run_before(commit: str, argv: list[str]) -> dict:
    """The same measurement on ``commit``'s library (its files first on PYTHONPATH)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "before.json")
        env = {**os.environ, "PYTHONPATH": export_revision(commit, tmp)}
        subprocess.run([sys.executable, __file__, *argv, "--_child", out], check=True, env=env)
        with open(out) as fh:
            result = json.load(fh)
    result["code"] = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", commit], capture_output=True,
                                    text=True).stdout.strip()
    return result


def table(runs: list[dict], args) -> str:
    """The report: one row per run, then the phases of each."""
    what = (f"Cholesky embeddings, sparse route (SANSA ICF inverse at {args.nnz_per_item} non-zeros per item, rows "
            f"cut to k={args.k})" if args.model == "chol" else f"SANSA ICF at {args.nnz_per_item} non-zeros per item")
    lines = [f"## {what} on a synthetic power-law catalogue", "",
             f"{args.items:,} items, {args.users:,} training users (~{args.per_user:g} items each, Zipf "
             f"{args.exponent:g}), {args.heldout:,} held-out users (80% folded in), l2={args.l2:g}.", "",
             *report.table(["code", "fit s", "peak RSS GiB (fit)", "nnz(E)", "ICF shift", "final UMR loss",
                            "held-out users", "Recall@20", "NDCG@20"],
                           [[r["code"], f"{r['fit_seconds']:.0f}", f"{r['peak_rss_gib_fit']:.1f}",
                             f"{r['nnz_encoder']:,}", f"{r['icf_shift']:g}", f"{r['umr_losses'][-1]:.3e}",
                             f"{r['heldout']['users']:,}", f"{r['heldout']['recall@20']:.4f}",
                             f"{r['heldout']['ndcg@20']:.4f}"] for r in runs])]
    for r in runs:
        lines += ["", f"Phases ({r['code']}):", "",
                  *report.table(["phase", "seconds", "peak RSS GiB"],
                                [[p["phase"], f"{p['seconds']:.1f}", f"{p['peak_rss_gib']:.1f}"] for p in r["phases"]])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/sansa-scale")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--heldout", type=int, default=20_000, help="users kept out of training, for Recall@20")
    ap.add_argument("--per-user", type=float, default=20.0)
    ap.add_argument("--exponent", type=float, default=0.8)
    ap.add_argument("--model", choices=("sansa", "chol"), default="sansa")
    ap.add_argument("--nnz-per-item", type=int, default=50, help="SANSA's, or the Cholesky route's inverse's")
    ap.add_argument("-k", "--k", type=int, default=200, help="--model chol: non-zeros kept per row")
    ap.add_argument("--l2", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the index and the held-out histories into this directory")
    ap.add_argument("--before", default=None, help="also measure this commit's code, first, in its own process")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        write_text(args._child, json.dumps(measure(args)))
        return
    argv = list(sys.argv[1:])
    if args.before:
        i = argv.index("--before")
        del argv[i: i + 2]
    runs = [run_before(args.before, argv)] if args.before else []
    with tempfile.TemporaryDirectory() as tmp:  # each run in its own process: peaks do not carry over
        subprocess.run([sys.executable, __file__, *argv, "--_child", os.path.join(tmp, "now.json")], check=True)
        with open(os.path.join(tmp, "now.json")) as fh:
            runs.append(json.load(fh))
    report.write(args.out, {"runs": runs}, table(runs, args))


if __name__ == "__main__":
    main()
