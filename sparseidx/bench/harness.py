"""Recall-vs-latency benchmark: every method and setting on the same queries, in one process.

For each setting it measures recall@k against the exact answer, single-thread
latency (p50, p99: one query per call), batch throughput at each thread count (median of 3 runs),
recommendation quality on the test split, postings scanned and entries read
(sparseidx: encoder rows + postings + rescored rows, the P of the cost model
P x 1 ns + N x 0.6 ns), and index bytes.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import scipy.sparse as sp

from ..evaluate import ranking_metrics
from ..progress import log

NS_PER_POSTING = 1.0
NS_PER_ITEM = 0.6


def recall_against(ids: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |answer ∩ exact| / |exact| (exact ids of -1 ignored)."""
    hits, total = 0, 0
    for a, e in zip(ids, exact):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e))
        total += len(e)
    return hits / max(total, 1)


def latency(method, H: sp.csr_matrix, k: int, setting: dict) -> dict:
    """Single-thread per-query latency in microseconds (first query is a warm-up)."""
    method.single(H[0], k, setting)
    times = np.empty(H.shape[0])
    for q in range(H.shape[0]):
        row = H[q]
        t0 = time.perf_counter()
        method.single(row, k, setting)
        times[q] = time.perf_counter() - t0
    us = times * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean())}


def batch_seconds(method, H: sp.csr_matrix, k: int, setting: dict, threads: int, repeat: int = 3,
                  long_run: float = 2.0):
    """(ids, postings/query, entries/query, seconds): the median of ``repeat`` batch runs.

    A run longer than ``long_run`` seconds is measured once: host noise is small
    against it, and the slow peers would otherwise dominate the benchmark's time.
    """
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ids, postings, entries = method.batch(H, k, setting, threads)
        times.append(time.perf_counter() - t0)
        if times[0] > long_run:
            break
    return ids, postings, entries, float(np.median(times))


def run(methods, H: sp.csr_matrix, test: sp.csr_matrix, test_sizes: np.ndarray, exact: np.ndarray, k: int,
        thread_counts: list[int], n_latency: int, n_items: int, seed: int = 0) -> list[dict]:
    """Measure every setting of every method; returns one row per (method, setting)."""
    rng = np.random.default_rng(seed)
    lat_rows = rng.choice(H.shape[0], size=min(n_latency, H.shape[0]), replace=False)
    H_lat = H[lat_rows]
    rows = []
    for method in methods:
        for setting in method.settings():
            label = ", ".join(f"{a}={b}" for a, b in setting.items()) or "exact"
            log.info("bench %s [%s]", method.name, label)
            row = {"method": method.name, "setting": label, "options": setting, "index_bytes": method.nbytes()}
            for t in thread_counts:
                ids, postings, entries, seconds = batch_seconds(method, H, k, setting, t)
                row[f"qps_{t}t"] = H.shape[0] / seconds
            row["recall_vs_exact"] = recall_against(ids, exact)
            quality = ranking_metrics(ids, test, ks=(k,), test_sizes=test_sizes)
            row[f"recall@{k}"] = float(quality[f"recall@{k}"].mean())
            row[f"ndcg@{k}"] = float(quality[f"ndcg@{k}"].mean())
            row.update(latency(method, H_lat, k, setting))
            row["postings_per_query"] = postings
            row["entries_per_query"] = entries
            if not np.isnan(entries):
                model_us = (entries * NS_PER_POSTING + n_items * NS_PER_ITEM) / 1000
                row["cost_model_us"] = model_us
                row["mean_over_model"] = row["mean_us"] / model_us  # one query per call: Python call included
                row["batch_over_model"] = 1e6 / row[f"qps_{thread_counts[0]}t"] / model_us  # in the engine only
            rows.append(row)
    return rows


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (recall up, speed up), sorted by recall."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def write_report(rows: list[dict], out: str, meta: dict, k: int, thread_counts: list[int]) -> None:
    """report.json, report.md and the recall-vs-QPS plots in ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2, default=float)
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(markdown(rows, meta, k, thread_counts))
    plot(rows, out, k, thread_counts)


def markdown(rows: list[dict], meta: dict, k: int, thread_counts: list[int]) -> str:
    head = ["method", "setting", f"recall@{k} vs exact", "p50 us", "p99 us", "1-thread QPS (1/mean)",
            *[f"batch QPS {t}t" for t in thread_counts], "postings/query", "P = entries/query", "cost model us",
            "single mean/model", f"batch {thread_counts[0]}t/model",
            f"Recall@{k} test", f"NDCG@{k} test", "index MB"]
    lines = [f"# sparseidx bench: {meta.get('index', '')}", "",
             f"{meta.get('queries')} queries (test users' train histories), {meta.get('latency_queries')} of them "
             f"for single-thread latency; {meta.get('n_items')} items; cost model P x {NS_PER_POSTING} ns + "
             f"N x {NS_PER_ITEM} ns (single mean/model: one query per call, Python call included; "
             f"batch {thread_counts[0]}t/model: time per query inside a {thread_counts[0]}-thread batch).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["setting"], f"{r['recall_vs_exact']:.4f}", f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}",
                 f"{1e6 / r['mean_us']:,.0f}", *[f"{r[f'qps_{t}t']:,.0f}" for t in thread_counts],
                 _num(r.get("postings_per_query"), "{:,.0f}"), _num(r.get("entries_per_query"), "{:,.0f}"),
                 _num(r.get("cost_model_us"), "{:.0f}"),
                 _num(r.get("mean_over_model"), "{:.2f}"), _num(r.get("batch_over_model"), "{:.2f}"),
                 f"{r[f'recall@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}",
                 f"{r['index_bytes'] / 1e6:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(v, f):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f.format(v)


def plot(rows: list[dict], out: str, k: int, thread_counts: list[int]) -> None:
    """recall-vs-QPS plots (log y) with each method's Pareto frontier: single thread and batch."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("Warning: matplotlib is not installed; skipping plots (pip install 'sparseidx[plot]')")
        return
    panels = [("single thread (1 / mean latency)", lambda r: 1e6 / r["mean_us"], "latency.png")]
    panels += [(f"batch, {t} thread(s)", (lambda t: lambda r: r[f"qps_{t}t"])(t), f"batch_{t}t.png")
               for t in thread_counts]
    for title, speed, fname in panels:
        fig, ax = plt.subplots(figsize=(7, 5))
        for name in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == name]
            pts = [(r["recall_vs_exact"], speed(r)) for r in mine]
            front = pareto(pts)
            line = ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", label=name)[0]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=line.get_color(), alpha=0.4)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{k} against the exact answer")
        ax.set_ylabel("queries per second (log)")
        ax.set_title(f"recall vs speed, {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=120)
        plt.close(fig)
