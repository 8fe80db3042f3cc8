"""Issue 23 figures: `sparseidx serve` under a bounded load on loopback, beside the engine in process.

    python benchmarks/serve.py --index /tmp/serve/book.idx --dense-index /tmp/serve/book-hnsw.idx \\
        --data examples/amazon-book --out reports/serve [--seconds 30] [--workers 2]

For each index (the sparse Cholesky index, then the FAISS HNSW baseline): the engine in this
process (one history per call on one thread: p50/p99; batches of --batch histories on all
cores: histories/s), then the service (``sparseidx serve --workers N`` on 127.0.0.1) loaded
by wrk (Debian package ``wrk``; one thread, a fixed number of connections, each sending its
next request when the previous answer arrives) at concurrency 1, 4, 16 and 64 on the single
and the batch endpoint, --seconds per point: p50/p99 latency, requests and histories per
second, errors (connect/read/write/timeout and non-2xx answers), and the CPU time the service's
processes used per request (from /proc: what the figures would be on cores of its own). Histories are the training
histories of a seeded sample of users; options as the README's fast operating point
(prune=0.003) for the sparse index, FAISS's defaults for HNSW.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

import report  # benchmarks/, this script's directory

from sparseidx.files import write_text

CONCURRENCY = (1, 4, 16, 64)
K = 20

# wrk script: requests cycle through the bodies; done() prints the figures as one JSON line
LUA = r"""
local bodies = dofile(os.getenv("SERVE_BODIES"))
local path = os.getenv("SERVE_PATH")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, bodies[(n % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def histories(data: str, n: int, seed: int = 0) -> list[list[int]]:
    """Training histories of ``n`` users drawn with a fixed seed (``user item item ...`` lines)."""
    rows = []
    with open(os.path.join(data, "train.txt")) as fh:
        for line in fh:
            ids = [int(t) for t in line.split()[1:]]
            if ids:
                rows.append(ids)
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in pick]


def in_process(path: str, hist: list[list[int]], options: dict, batch: int) -> dict:
    """The engine as the service calls it: one history per call (1 thread), and batches (all cores)."""
    from sparseidx import Index

    index = Index.open(path)
    single = index.Options.parse(options, threads=1)
    index.search_detailed(hist[:2], K, single)
    times = []
    for h in hist:
        t0 = time.perf_counter()
        index.search_detailed([h], K, single)
        times.append(time.perf_counter() - t0)
    us = np.array(times) * 1e6
    many = index.Options.parse(options)
    chunks = [hist[i: i + batch] for i in range(0, len(hist) - batch + 1, batch)]
    index.search_detailed(chunks[0], K, many)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for chunk in chunks:
            index.search_detailed(chunk, K, many)
        runs.append(time.perf_counter() - t0)
    return {"single_p50_us": float(np.percentile(us, 50)), "single_p99_us": float(np.percentile(us, 99)),
            "single_qps_1t": float(len(us) / us.sum() * 1e6),
            "batch_histories_per_s": float(len(chunks) * batch / np.median(runs)), "batch": batch}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(path: str, workers: int) -> tuple[subprocess.Popen, str]:
    """``sparseidx serve`` on 127.0.0.1 and a free port, once it answers /readyz."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sparseidx_cli.main", "-q", "serve", path, "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sparseidx serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200 and _all_workers_ready(url, workers):
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("sparseidx serve did not become ready in 300 s")


def _all_workers_ready(url: str, workers: int) -> bool:
    """Whether ``workers`` distinct worker pids answer /v1/info (each worker opens the index itself)."""
    pids = set()
    for _ in range(20 * workers):
        with urllib.request.urlopen(url + "/v1/info", timeout=2) as r:
            pids.add(json.loads(r.read())["worker_pid"])
        if len(pids) == workers:
            return True
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the worker processes under the uvicorn process ``pid`` (and of ``pid``)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            pids = [pid, *map(int, fh.read().split())]
    except OSError:
        pids = [pid]
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def load(url: str, path: str, bodies: list[str], connections: int, seconds: int, workdir: str) -> dict:
    """One wrk run: ``connections`` closed-loop clients for ``seconds`` on ``url + path``."""
    script = os.path.join(workdir, "serve.lua")
    table = os.path.join(workdir, f"bodies{abs(hash(path))}.lua")
    with open(script, "w") as fh:
        fh.write(LUA)
    with open(table, "w") as fh:
        fh.write("return {\n" + ",\n".join("[==[" + b + "]==]" for b in bodies) + "\n}\n")
    env = {**os.environ, "SERVE_BODIES": table, "SERVE_PATH": path}
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                          "-s", script, url], capture_output=True, text=True, env=env, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row["rps"] = row["requests"] / (row["duration_us"] / 1e6)
    row["errors"] = sum(row[k] for k in ("connect", "read", "write", "status", "timeout"))
    return row


def measure(name: str, path: str, hist: list[list[int]], options: dict, args, workdir: str) -> dict:
    """In-process figures, then the service at every concurrency on both endpoints."""
    print(f"{name}: in process ...", file=sys.stderr)
    engine = in_process(path, hist, options, args.batch)
    single = [json.dumps({"history": h, "k": K, "options": options}) for h in hist]
    batches = [json.dumps({"histories": hist[i: i + args.batch], "k": K, "options": options})
               for i in range(0, len(hist) - args.batch + 1, args.batch)]
    proc, url = start_service(path, args.workers)
    rows = []
    try:
        for endpoint, bodies, per in (("/v1/recommend", single, 1), ("/v1/recommend/batch", batches, args.batch)):
            for c in CONCURRENCY:
                print(f"{name}: {endpoint} at concurrency {c} for {args.seconds} s ...", file=sys.stderr)
                cpu = cpu_seconds(proc.pid)
                row = load(url, endpoint, bodies, c, args.seconds, workdir)
                row["server_cpu_us"] = (cpu_seconds(proc.pid) - cpu) / max(row["requests"], 1) * 1e6
                rows.append({"endpoint": endpoint, "concurrency": c, "histories_per_s": row["rps"] * per, **row})
    finally:
        proc.terminate()
        proc.wait(30)
    return {"index": name, "path": path, "options": options, "in_process": engine, "service": rows}


def markdown(results: list[dict], meta: dict) -> str:
    """The report: one table per index, and the goals checked against this run."""
    lines = ["# `sparseidx serve` under load", "",
             f"{meta['date']}, {meta['host']}, {meta['cores']} cores; {meta['workers']} workers, wrk 1 thread, "
             f"{meta['seconds']} s per point, k={K}, {meta['histories']} training histories of seeded users, batch "
             f"endpoint {meta['batch']} histories per request; 1-minute load average {meta['load_before']:.1f} "
             f"before, {meta['load_after']:.1f} after. Latency is wrk's (request sent to answer read, on "
             "loopback); in-process is the engine called as the service calls it (a list of item ids, one "
             "history per call on 1 thread; batches of the same size on all cores).", ""]
    for res in results:
        e = res["in_process"]
        lines += [f"## {res['index']} ({json.dumps(res['options'])})", "",
                  f"In process: single p50 {e['single_p50_us']:.0f} us, p99 {e['single_p99_us']:.0f} us "
                  f"({e['single_qps_1t']:,.0f} QPS on 1 thread); batches of {e['batch']}: "
                  f"{e['batch_histories_per_s']:,.0f} histories/s on all cores.", "",
                  *report.table(["endpoint", "concurrency", "p50 us", "p99 us", "requests/s", "histories/s",
                                 "server CPU us / request", "errors"],
                                [[r["endpoint"], r["concurrency"], f"{r['p50_us']:,}", f"{r['p99_us']:,}",
                                  f"{r['rps']:,.0f}", f"{r['histories_per_s']:,.0f}", f"{r['server_cpu_us']:,.0f}",
                                  r["errors"]] for r in res["service"]]),
                  "", *goals(res), ""]
    return "\n".join(lines)


def goals(res: dict) -> list[str]:
    """The issue's goals, each with this run's figure."""
    e, rows = res["in_process"], res["service"]
    at = {(r["endpoint"], r["concurrency"]): r for r in rows}
    one, c16 = at[("/v1/recommend", 1)], at[("/v1/recommend", 16)]
    best_batch = max(r["histories_per_s"] for r in rows if r["endpoint"] == "/v1/recommend/batch")
    gap = one["p50_us"] - e["single_p50_us"]
    errors = sum(r["errors"] for r in rows)
    check = {True: "met", False: "**not met**"}
    return [f"- concurrency 1, p50 within 250 us of in-process: {one['p50_us']:,} - {e['single_p50_us']:.0f} = "
            f"{gap:,.0f} us ({check[gap <= 250]})",
            f"- single endpoint >= 5,000 QPS with p99 < 10 ms at concurrency 16: {c16['rps']:,.0f} QPS, p99 "
            f"{c16['p99_us'] / 1000:.1f} ms ({check[c16['rps'] >= 5000 and c16['p99_us'] < 10_000]})",
            f"- batch endpoint >= half the in-process batch throughput: {best_batch:,.0f} vs "
            f"{e['batch_histories_per_s']:,.0f} histories/s = {best_batch / e['batch_histories_per_s']:.2f} "
            f"({check[best_batch >= e['batch_histories_per_s'] / 2]})",
            f"- errors at every point: {errors} ({check[errors == 0]})"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, help="the sparse Cholesky index")
    ap.add_argument("--dense-index", default=None, help="the FAISS HNSW baseline index (optional)")
    ap.add_argument("--data", default="examples/amazon-book")
    ap.add_argument("--out", default="reports/serve")
    ap.add_argument("--seconds", type=int, default=30, help="seconds per load point")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--users", type=int, default=2000, help="histories sampled")
    ap.add_argument("--batch", type=int, default=256, help="histories per batch request")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    hist = histories(args.data, args.users)
    runs = [("sparse Cholesky k=200", args.index, {"prune": 0.003})]
    if args.dense_index:
        runs.append(("FAISS HNSW32,Flat (rank-256 Cholesky/EASE)", args.dense_index, {}))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "cores": os.cpu_count(),
            "workers": args.workers, "seconds": args.seconds, "histories": len(hist), "batch": args.batch,
            "command": " ".join(sys.argv), "load_before": os.getloadavg()[0]}
    os.makedirs(args.out, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, path, options in runs:  # the report is rewritten after each index
            results.append(measure(name, path, hist, options, args, workdir))
            meta["load_after"] = os.getloadavg()[0]
            write_text(os.path.join(args.out, "results.json"), json.dumps({"meta": meta, "results": results},
                                                                          indent=2))
            text = markdown(results, meta)
            write_text(os.path.join(args.out, "README.md"), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
