"""How long opening an index takes: the first open (every file hashed and its values checked), a later
open (both remembered per file version), without checksums, and `sparseidx verify`'s full check.

Each open runs in a fresh process (nothing cached in Python); the files are in the page cache
(read once before), so the figures are CPU, not disk. Verified files are remembered in a
temporary cache directory of this run.

    python benchmarks/open_index.py INDEX [--repeat 5] [--out reports/bench-1m/open.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import report  # benchmarks/, this script's directory

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from sparseidx import Index
t1 = time.perf_counter()
mode = sys.argv[2]
if mode == "verify":
    assert Index.verify(sys.argv[1]) == []
else:
    Index.open(sys.argv[1], verify=(mode != "no-checksums"))
print(json.dumps({"import_s": t1 - t0, "open_s": time.perf_counter() - t1}))
"""


def timed(index: str, mode: str, env: dict) -> float:
    """Seconds of one open (or verify) in a fresh process, imports excluded."""
    out = subprocess.run([sys.executable, "-c", CHILD, index, mode], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["open_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = ap.parse_args()
    size = sum(os.path.getsize(os.path.join(args.index, f)) for f in os.listdir(args.index))
    for f in os.listdir(args.index):  # into the page cache
        with open(os.path.join(args.index, f), "rb") as fh:
            while fh.read(1 << 24):
                pass
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SPARSEIDX_CACHE_DIR": cache}
        first = timed(args.index, "open", env)
        rows = [("first open (every file hashed and checked, then remembered)", [first])]
        for mode, label in (("open", "later opens (checks remembered)"),
                            ("no-checksums", "Index.open(verify=False): no hashing, every value checked"),
                            ("verify", "sparseidx verify (full)")):
            rows.append((label, [timed(args.index, mode, env) for _ in range(args.repeat)]))
    lines = [f"Opening `{args.index}` ({size / 2**30:.2f} GiB), each in a fresh process, files in the page cache:",
             "", *report.table(["what", "median s", "runs"],
                               [[label, f"{statistics.median(t):.3f}", len(t)] for label, t in rows])]
    table = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table)
    print(table)


if __name__ == "__main__":
    main()
