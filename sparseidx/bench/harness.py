"""Recall-vs-latency benchmark: every method and setting on the same queries, in one process.

For each setting it measures recall@k against the exact answer, single-thread
latency (p50, p99: one query per call), batch throughput at each thread count (slices of the
queries timed in turn at every thread count; median of 3 rounds when they are short),
recommendation quality on the test split, postings scanned and entries read
(sparseidx: encoder rows + postings + rescored rows, the P of the cost model
P x 1 ns + N x 0.6 ns), and index bytes. Beside every sparseidx setting it also
times the model's two reference loops (``calibrate``), so the model is reported
both with its fixed constants and in this host's units of the moment.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import scipy.sparse as sp

from ..evaluate import ranking_metrics
from ..files import REPORT_FILE, atomic_output, write_text
from ..progress import log
from .calibrate import host_costs

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


def batch_seconds(method, H: sp.csr_matrix, k: int, setting: dict, thread_counts: list[int], repeat: int = 3,
                  long_run: float = 2.0, chunks: int = 8):
    """(ids, postings/query, entries/query, {threads: seconds}): medians of ``repeat`` rounds.

    A round runs the queries in ``chunks`` consecutive slices and each slice once per
    thread count (in turn, the order reversed from one slice to the next), so a host
    that speeds up or slows down during the measurement moves every thread count
    alike, even within one long round. A round longer than ``long_run`` seconds is
    the only one: host noise is small against it, and the slow peers would otherwise
    dominate the benchmark's time. ids, postings and entries come from the first
    thread count of the first round.
    """
    n = H.shape[0]
    edges = np.unique(np.linspace(0, n, max(1, min(chunks, n)) + 1).astype(np.int64))
    slices = [H[a:b] for a, b in zip(edges[:-1], edges[1:])]
    times = {t: [] for t in thread_counts}
    answers = []
    for round_ in range(repeat):
        spent = dict.fromkeys(thread_counts, 0.0)
        for c, Hc in enumerate(slices):
            for t in (thread_counts if c % 2 == 0 else thread_counts[::-1]):
                t0 = time.perf_counter()
                out = method.batch(Hc, k, setting, t)
                spent[t] += time.perf_counter() - t0
                if round_ == 0 and t == thread_counts[0]:
                    answers.append(out)
        for t in thread_counts:
            times[t].append(spent[t])
        if sum(spent.values()) > long_run:
            break
    sizes = [Hc.shape[0] for Hc in slices]
    ids = np.vstack([a[0] for a in answers])
    postings = float(np.average([a[1] for a in answers], weights=sizes))
    entries = float(np.average([a[2] for a in answers], weights=sizes))
    return ids, postings, entries, {t: float(np.median(v)) for t, v in times.items()}


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
            counts_entries = getattr(method, "counts_entries", False)
            if counts_entries:
                host = host_costs(n_items)
            ids, postings, entries, seconds = batch_seconds(method, H, k, setting, thread_counts)
            for t in thread_counts:
                row[f"qps_{t}t"] = H.shape[0] / seconds[t]
            row["recall_vs_exact"] = recall_against(ids, exact)
            quality = ranking_metrics(ids, test, ks=(k,), test_sizes=test_sizes)
            row[f"recall@{k}"] = float(quality[f"recall@{k}"].mean())
            row[f"ndcg@{k}"] = float(quality[f"ndcg@{k}"].mean())
            row.update(latency(method, H_lat, k, setting))
            row["postings_per_query"] = postings
            row["entries_per_query"] = entries
            if counts_entries:
                row.update(cost_model(entries, n_items, row["mean_us"], 1e6 / row[f"qps_{thread_counts[0]}t"], host))
            rows.append(row)
    return rows


def cost_model(entries: float, n_items: int, single_us: float, batch_us: float, host: dict) -> dict:
    """Measured time per query against P x 1 ns + N x 0.6 ns, and against the same model in host units.

    ``single_us``: one query per call (Python call included); ``batch_us``: time per
    query inside a one-thread batch (the engine alone).
    """
    model_us = (entries * NS_PER_POSTING + n_items * NS_PER_ITEM) / 1000
    host_us = (entries * host["ns_per_posting"] + n_items * host["ns_per_item"]) / 1000
    return {"cost_model_us": model_us, "batch_us": batch_us, "mean_over_model": single_us / model_us,
            "batch_over_model": batch_us / model_us, "host_ns_per_posting": host["ns_per_posting"],
            "host_ns_per_item": host["ns_per_item"], "host_model_us": host_us,
            "batch_over_host_model": batch_us / host_us}


def summary(rows: list[dict], thread_counts: list[int], target: float = 0.99) -> dict:
    """The headline comparisons: sparseidx's and each peer's fastest setting (p50) at recall >= target."""
    def best(name):
        ok = [r for r in rows if r["method"] == name and r["recall_vs_exact"] >= target]
        return min(ok, key=lambda r: r["p50_us"]) if ok else None

    out = {"target_recall": target, "best": {}}
    mine = best("sparseidx")
    for name in dict.fromkeys(r["method"] for r in rows):
        b = best(name)
        out["best"][name] = None if b is None else {
            "setting": b["setting"], "recall_vs_exact": b["recall_vs_exact"], "p50_us": b["p50_us"],
            "sparseidx_p50_speedup": (b["p50_us"] / mine["p50_us"]) if mine else None}
    if len(thread_counts) > 1:
        t0, t1 = thread_counts[0], thread_counts[-1]
        ratios = [r[f"qps_{t1}t"] / r[f"qps_{t0}t"] for r in rows if r["method"] == "sparseidx"]
        out["sparseidx_thread_scaling"] = {"threads": [t0, t1], "min": min(ratios), "max": max(ratios)}
    costed = [r for r in rows if r["method"] == "sparseidx" and "batch_over_model" in r]
    if costed:
        out["sparseidx_batch_over_model"] = {"min": min(r["batch_over_model"] for r in costed),
                                             "max": max(r["batch_over_model"] for r in costed)}
        out["sparseidx_batch_over_host_model"] = {"min": min(r["batch_over_host_model"] for r in costed),
                                                  "max": max(r["batch_over_host_model"] for r in costed)}
    return out


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (recall up, speed up), sorted by recall."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def write_report(rows: list[dict], out: str, meta: dict, k: int, thread_counts: list[int]) -> str:
    """report.json, report.md and the recall-vs-QPS plots in ``out``; returns report.md's text."""
    os.makedirs(out, exist_ok=True)
    meta = {**meta, "summary": summary(rows, thread_counts)}
    write_text(os.path.join(out, "report.json"), json.dumps({"meta": meta, "rows": rows}, indent=2, default=float))
    text = markdown(rows, meta, k, thread_counts)
    write_text(os.path.join(out, "report.md"), text)
    plot(rows, out, k, thread_counts)
    return text


def markdown(rows: list[dict], meta: dict, k: int, thread_counts: list[int]) -> str:
    """The report for people: headline comparisons, every setting, then sparseidx against the cost model."""
    t0 = thread_counts[0]
    lines = [f"# sparseidx bench: {meta.get('index', '')}", "",
             f"{meta.get('queries')} queries (test users' train histories), {meta.get('latency_queries')} of them "
             f"for single-thread latency (one query per call); {meta.get('n_items')} items; k = {k}.", ""]
    lines += _summary_lines(meta.get("summary") or summary(rows, thread_counts))
    head = ["method", "setting", f"recall@{k} vs exact", "p50 us", "p99 us", "1-thread QPS (1/mean)",
            *[f"batch QPS {t}t" for t in thread_counts]]
    if len(thread_counts) > 1:
        head.append(f"{thread_counts[-1]}t / {t0}t")
    head += [f"Recall@{k} test", f"NDCG@{k} test", "index MB"]
    lines += ["## Every setting", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["setting"], f"{r['recall_vs_exact']:.4f}", f"{r['p50_us']:,.0f}", f"{r['p99_us']:,.0f}",
                 f"{1e6 / r['mean_us']:,.0f}", *[f"{r[f'qps_{t}t']:,.0f}" for t in thread_counts]]
        if len(thread_counts) > 1:
            cells.append(f"{r[f'qps_{thread_counts[-1]}t'] / r[f'qps_{t0}t']:.2f}")
        cells += [f"{r[f'recall@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}", f"{r['index_bytes'] / 1e6:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    costed = [r for r in rows if "cost_model_us" in r]
    if costed:
        lines += ["", "## sparseidx against the cost model", "",
                  f"Model: P x {NS_PER_POSTING} ns + N x {NS_PER_ITEM} ns, P = entries read per query (encoder rows "
                  "of the history + postings scanned + rescored item rows), N = items. *batch*: time per query inside "
                  f"a {t0}-thread batch (the engine); *single*: one query per call (Python call included). The host "
                  "columns time the model's two reference loops (a scatter-add into N floats, a top-10 pass over "
                  "N floats) just before the setting: the same model in this host's units of the moment.", "",
                  "| method | setting | postings/query | P = entries/query | model us | single mean us | single/model "
                  "| batch us | batch/model | host ns/posting | host ns/item | host model us | batch/host model |",
                  "|" + "---|" * 13]
        for r in costed:
            lines.append("| " + " | ".join([
                r["method"], r["setting"], f"{r['postings_per_query']:,.0f}", f"{r['entries_per_query']:,.0f}",
                f"{r['cost_model_us']:,.1f}", f"{r['mean_us']:,.1f}", f"{r['mean_over_model']:.2f}",
                f"{r['batch_us']:,.1f}", f"{r['batch_over_model']:.2f}", f"{r['host_ns_per_posting']:.2f}",
                f"{r['host_ns_per_item']:.2f}", f"{r['host_model_us']:,.1f}",
                f"{r['batch_over_host_model']:.2f}"]) + " |")
    return "\n".join(lines) + "\n"


def _summary_lines(s: dict) -> list[str]:
    lines = ["## Headline", ""]
    best = s["best"]
    mine = best.get("sparseidx")
    for name, b in best.items():
        if b is None:
            lines.append(f"- {name}: no setting reaches recall {s['target_recall']} against the exact answer")
            continue
        versus = "" if name == "sparseidx" or mine is None else \
            f"; sparseidx's p50 is {b['sparseidx_p50_speedup']:.1f}x lower"
        lines.append(f"- {name}: fastest at recall >= {s['target_recall']}: {b['setting']} "
                     f"(recall {b['recall_vs_exact']:.4f}), p50 {b['p50_us']:,.0f} us{versus}")
    if "sparseidx_thread_scaling" in s:
        t = s["sparseidx_thread_scaling"]
        lines.append(f"- sparseidx batch throughput, {t['threads'][1]} threads / {t['threads'][0]}: "
                     f"{t['min']:.2f}-{t['max']:.2f}x over its settings")
    if "sparseidx_batch_over_model" in s:
        m, h = s["sparseidx_batch_over_model"], s["sparseidx_batch_over_host_model"]
        lines.append(f"- sparseidx time per query in a batch / cost model: {m['min']:.2f}-{m['max']:.2f}x "
                     f"(fixed constants), {h['min']:.2f}-{h['max']:.2f}x (this host's constants)")
    return lines + [""]


def plot(rows: list[dict], out: str, k: int, thread_counts: list[int]) -> None:
    """recall-vs-QPS plots (log y) with each method's Pareto frontier: single thread and batch."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("Warning: matplotlib is not installed; skipping plots (from sparseidx's clone: "
                    "pip install -e '.[plot]', or make bench-setup)")
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
        with atomic_output(os.path.join(out, fname), REPORT_FILE, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
