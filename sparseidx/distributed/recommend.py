"""Batch recommendations on a Dask cluster: one Parquet file per partition, a summary, then ``_SUCCESS``.

The job writes into a temporary sibling of ``out`` (``files.atomic_output``) that every
worker sees; each partition task answers its file with the single-machine batch path
(``recommend_file``) into ``part-NNNNN.parquet`` of that directory, atomically, so a
retried or speculative task only rewrites its own file. When every partition is
written, ``_summary.json`` and ``_SUCCESS`` are added and the directory replaces
``out`` in one step. A failed job removes its temporary directory: ``out`` keeps what
it held before (nothing new is left behind; a client killed outright leaves a hidden
``.OUT.tmp-...`` folder, removed by the next successful write of ``out``).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import replace

import numpy as np

from ..batch import answered_users, recommend_file
from ..data import show_token
from ..errors import DataError, SparseIdxError
from ..files import OutputKind, atomic_output, check_output
from ..progress import counter, log
from ..user_keys import keys, split_user
from .cluster import connect, outcome, workers
from .indexes import is_url, open_index
from .partitions import list_partitions

KIND = "recommendations"
SUCCESS = "_SUCCESS"
SUMMARY = "_summary.json"
PART = "part-{:05d}.parquet"
_PART = re.compile(r"part-[0-9]{5,}\.parquet")


def _results_foreign(path: str) -> str | None:
    """None when ``path`` is a recommendations directory of this module (parts, summary, marker only)."""
    try:
        with open(os.path.join(path, SUMMARY)) as fh:
            summary = json.load(fh)
    except (OSError, ValueError):
        return f"it has no readable {SUMMARY}, so it is not a recommendations directory"
    if not isinstance(summary, dict) or summary.get("kind") != KIND:
        return f"its {SUMMARY} is not that of sparseidx recommendations"
    foreign = sorted(e for e in os.listdir(path) if not (_PART.fullmatch(e) or e in (SUCCESS, SUMMARY)))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds {shown}, which sparseidx did not write"
    return None


RESULTS_DIR = OutputKind("a recommendations directory", True, _results_foreign)


def recommend(index, users, out, k: int = 20, scheduler="local:2", overwrite: bool = False,
              skip_unknown: bool = False, options=None, *, exclude=None, allow=None, **knobs) -> dict:
    """Top-k items of every user of the dataset ``users``, written to the directory ``out`` by Dask workers.

    ``index``: a path every worker sees, or an fsspec URL (copied once per machine).
    ``users``: a file or a directory of histories files (see ``partitions``); each
    file is one partition, answered into ``out/part-NNNNN.parquet`` with the columns
    of ``recommend_file``. ``scheduler``: ``local:N``, ``tcp://HOST:PORT`` or a
    ``distributed.Client``. ``options``/``knobs`` and ``exclude``/``allow`` go to every
    search; unless ``threads`` is given, each partition runs on one engine thread (a
    worker runs as many partitions at once as it has threads). Returns the summary,
    also written to ``out/_summary.json``.
    """
    start = time.perf_counter()
    location = str(index) if is_url(str(index)) else os.path.abspath(os.fspath(index))
    idx = open_index(location)
    opts = _options(idx, k, options, knobs)
    parts = list_partitions(users)
    out = check_output(out, RESULTS_DIR, overwrite)
    _check_apart(out, users)
    meta = {"kind": KIND, "index": location, "index_build_id": idx.manifest.get("build_id"),
            "model": idx.manifest.get("model"), "k": int(k), "users_source": os.path.abspath(os.fspath(users))}
    with connect(scheduler) as client, atomic_output(out, RESULTS_DIR, overwrite) as tmp:
        results = _run(client, parts, tmp, location, meta["index_build_id"], k, opts, skip_unknown,
                       {"exclude": exclude, "allow": allow})
        found = [e for e in os.listdir(tmp) if _PART.fullmatch(e)]
        for leftover in set(os.listdir(tmp)) - set(found):  # temporaries of writers killed mid-write
            os.unlink(os.path.join(tmp, leftover))
        if len(found) != len(parts):
            raise SparseIdxError(f"{len(found)} result files for {len(parts)} partitions; run the job again")
        _check_once(results, tmp)
        summary = _summary(meta, out, results, workers(client), time.perf_counter() - start)
        with open(os.path.join(tmp, SUMMARY), "w") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")
        open(os.path.join(tmp, SUCCESS), "w").close()
    return summary


def _options(idx, k, options, knobs):
    """The search options every partition runs with, checked here once (one engine thread unless told)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DataError(f"k must be an integer >= 1, got {k!r}")
    opts = idx.options(options, **knobs)
    if opts.target_recall is not None:
        if not _has_point(idx, opts.target_recall, k):
            raise DataError("target_recall would be calibrated on each worker's own partition; calibrate once "
                            "(sparseidx build --target-recall, or the knobs 'sparseidx bench' reports) and give "
                            "the knobs")
        opts = idx.resolve(opts, k, None)  # the index's own operating point: no calibration
    return opts if opts.threads is not None else replace(opts, threads=1)


def _has_point(idx, target, k) -> bool:
    point = idx.manifest.get("operating_point") or {}
    return (point.get("target_recall"), point.get("k")) == (target, k)


def _check_apart(out: str, users) -> None:
    """Refuse an output inside the input dataset (or holding it): the next run would read it back."""
    users = os.path.abspath(os.fspath(users))
    if os.path.commonpath([out, users]) in (out, users):
        raise DataError(f"{out} and the histories {users} overlap; write the results elsewhere")


def _run(client, parts, tmp, location, build_id, k, opts, skip_unknown, filters) -> list[dict]:
    """Submit one task per partition, follow them (progress on the client) and return their summaries."""
    from distributed import as_completed

    job = uuid.uuid4().hex[:8]
    shared = {name: None if ids is None else client.scatter(np.asarray(ids), broadcast=True)
              for name, ids in filters.items()}  # sent to each worker once, not with every task
    futures = [client.submit(_answer, location, build_id, part, os.path.join(tmp, PART.format(i)), k, opts,
                             skip_unknown, shared, key=f"sparseidx-recommend-{job}-{i:05d}")
               for i, part in enumerate(parts)]
    keys = {f.key: i for i, f in enumerate(futures)}
    results = []
    log.info("answering %d partition(s) on %d worker(s)", len(parts), workers(client))
    try:
        with counter(len(parts), "partitions") as progress:
            for future in as_completed(futures):
                results.append(outcome(future, parts[keys[future.key]]))
                progress.update(1)
    finally:
        client.cancel(futures)
    return results


def _answer(location, build_id, part, part_out, k, opts, skip_unknown, filters) -> dict:
    """Worker side: answer one partition into ``part_out`` (replacing its own file if the task ran before)."""
    started = time.perf_counter()
    idx = open_index(location, build_id)
    result = recommend_file(idx, part, part_out, k, overwrite=True, skip_unknown=skip_unknown, options=opts,
                            **filters)
    return {"partition": part, "file": os.path.basename(part_out), "users": result["users"],
            "keys": keys(answered_users(part_out)),
            "popular": result["popular"], "postings": result["postings_per_query"] * result["users"],
            "seconds": round(time.perf_counter() - started, 3)}


def _check_once(results: list[dict], tmp: str) -> None:
    """Refuse the job when a user was answered in two partitions (each from part of its history)."""
    found = split_user([r["keys"] for r in results], lambda i: answered_users(os.path.join(tmp, results[i]["file"])))
    if found:
        user, where = found
        first, second = sorted(results[i]["partition"] for i in where)[:2]
        raise DataError(f"user {show_token(user)} is in partitions {first} and {second} and would be answered in each "
                        "from part of its history; put each user's whole history in one partition")


def _summary(meta, out, results, n_workers, seconds) -> dict:
    users = sum(r["users"] for r in results)
    return {**meta, "out": out, "users": users, "partitions": len(results), "workers": n_workers,
            "popular": sum(r["popular"] for r in results),
            "postings_per_query": sum(r["postings"] for r in results) / max(users, 1),
            "seconds": round(seconds, 3), "users_per_second": round(users / max(seconds, 1e-9), 1),
            "parts": sorted(({"file": r["file"], "partition": r["partition"], "users": r["users"],
                              "seconds": r["seconds"]} for r in results), key=lambda r: r["file"])}
