"""One writer replaces an index in a loop while readers open and query it: how many answers are mixed or fail.

    python benchmarks/replace_soak.py --seconds 30 --out reports/replace-soak

Two builds of the same shape (80 items, 16 dims) alternate; every reader answers the same
30 histories after each open and compares the ids with each build's own answer. A mixed
answer matches neither; a failed open is any exception. Readers alternate verify=True and
False. Run it against another checkout with PYTHONPATH=/path/to/checkout to compare.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp

ITEMS, DIMS, QUERIES = 80, 16, 30


def _factors(seed: int):
    from sparseidx.factors import Factors

    rng = np.random.default_rng(seed)
    E, V = (sp.random(ITEMS, DIMS, density=0.25, random_state=rng, format="csr", data_rvs=lambda n: rng.normal(size=n))
            for _ in range(2))
    return Factors(encoder=E, embeddings=V, priors=rng.uniform(0.2, 2.0, ITEMS), item_ids=np.arange(ITEMS),
                   popularity=rng.integers(0, 100, ITEMS))


def _histories():
    rng = np.random.default_rng(7)
    return [rng.choice(ITEMS, size=rng.integers(1, 7), replace=False).tolist() for _ in range(QUERIES)]


def _writer(path, seconds, start, results):
    from sparseidx import Index

    builds = [Index.build(_factors(s)) for s in (11, 12)]
    start.wait()
    n, stop = 0, time.time() + seconds
    while time.time() < stop:
        builds[n % 2].write(path, overwrite=True)
        n += 1
    results.put({"replacements": n})


def _reader(path, expected, verify, seconds, start, results):
    from sparseidx import Index

    Index.open(path).search(_histories(), 10)  # compiled before the clock starts
    start.wait()
    answers = mixed = failed = 0
    first_failure = ""
    stop = time.time() + seconds
    while time.time() < stop:
        try:
            ids = Index.open(path, verify=verify).search(_histories(), 10)[1]
        except Exception as exc:  # noqa: BLE001 - every failure counts
            failed += 1
            first_failure = first_failure or f"{type(exc).__name__}: {exc}"[:200]
            continue
        answers += 1
        mixed += not any(np.array_equal(ids, e) for e in expected)
    results.put({"verify": verify, "answers": answers, "mixed": mixed, "failed": failed,
                 "first_failure": first_failure})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--readers", type=int, default=3)
    ap.add_argument("--out", default=None, help="directory for report.json (printed to stdout as well)")
    args = ap.parse_args()
    import sparseidx
    from sparseidx import Index

    expected = [Index.build(_factors(s)).search(_histories(), 10)[1] for s in (11, 12)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "idx")
        Index.build(_factors(11)).write(path)
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(args.readers + 1), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(path, args.seconds, start, results))]
        procs += [ctx.Process(target=_reader, args=(path, expected, i % 2 == 0, args.seconds, start, results))
                  for i in range(args.readers)]
        for p in procs:
            p.start()
        got = [results.get(timeout=args.seconds + 300) for _ in procs]
        for p in procs:
            p.join()
    readers = [g for g in got if "answers" in g]
    report = {"seconds": args.seconds, "replacements": next(g["replacements"] for g in got if "replacements" in g),
              "answers": sum(r["answers"] for r in readers), "mixed": sum(r["mixed"] for r in readers),
              "failed_opens": sum(r["failed"] for r in readers), "readers": readers,
              "sparseidx": os.path.dirname(sparseidx.__file__)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from sparseidx.files import write_text

        os.makedirs(args.out, exist_ok=True)
        write_text(os.path.join(args.out, "report.json"), text + "\n")


if __name__ == "__main__":
    main()
