"""Issue 6 figures: time, size and peak memory of every export target on one index.

Each export runs in a child process, so its peak resident memory is its own (the
index is memory-mapped; streaming keeps the rest bounded by the batch size).

    python benchmarks/export.py INDEX --out reports/export [--users examples/amazon-book/train.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from sparseidx.export import TARGETS
from sparseidx.files import write_text

SUFFIX = {"parquet": ".parquet", "feast": "", "milvus": ".parquet", "qdrant": ".jsonl", "pgvector": ".tsv",
          "vespa": ".jsonl", "elasticsearch": ".ndjson"}


def child(index: str, target: str, out: str, users: str | None) -> dict:
    import resource

    from sparseidx.export import export
    from sparseidx.index import Index

    t0 = time.perf_counter()
    summary = export(Index.open(index), target, out, overwrite=True, users=users,
                     split_signs=target == "elasticsearch")
    seconds = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs) \
        if os.path.isdir(out) else os.path.getsize(out)
    if isinstance(summary.get("users"), dict):
        size += summary["users"]["bytes"]
    return {"target": target, "seconds": seconds, "bytes": size,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "with_users": bool(users)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _, _, index, target, out, users = sys.argv
        print(json.dumps(child(index, target, out, users or None)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--out", default="reports/export")
    ap.add_argument("--users", default=None, help="histories for the user-embedding Parquet export")
    args = ap.parse_args()
    files = os.path.join(args.out, "files")
    os.makedirs(files, exist_ok=True)
    rows = []
    for target in TARGETS:
        out = os.path.join(files, target + SUFFIX[target])
        users = args.users if target == "parquet" else ""
        res = subprocess.run([sys.executable, __file__, "_child", args.index, target, out, users or ""],
                             check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"{target}: {rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    lines = [f"## Export of {args.index}", "", "| target | seconds | MB | peak RSS MiB |", "|---|---|---|---|"]
    for r in rows:
        name = r["target"] + (" (+ user embeddings)" if r["with_users"] else "")
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['bytes'] / 1e6:.0f} | {r['peak_rss_mib']:.0f} |")
    table = "\n".join(lines) + "\n"
    write_text(os.path.join(args.out, "report.json"), json.dumps({"index": args.index, "rows": rows}, indent=2))
    write_text(os.path.join(args.out, "report.md"), table)
    shutil.rmtree(files)  # the exports themselves are large and reproducible
    print(table)


if __name__ == "__main__":
    main()
