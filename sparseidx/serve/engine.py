"""Searches of the service: one compute thread per worker, a bounded queue, deadlines.

The engine's kernels hold the GIL, so a worker process computes on one thread and scales by
processes (``--workers``). The event loop stays free to read, validate and answer requests
while the thread computes. A single-history search (tens of microseconds) runs on the event
loop itself when nothing is queued: handing it to the thread would cost more than it takes.
At most ``max_pending`` searches wait or run per worker; one more is refused at once
(``Overloaded``, 503) instead of growing latency without bound. A search still waiting when
its deadline passes is dropped before it starts (``TimedOut``, 503); a started one runs to
completion (the kernels cannot be interrupted) and its answer is discarded, so the bounds on
k, history and batch size are what bound one search's work.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DataError, UnknownItemError
from .generation import Generation


class Overloaded(Exception):
    """The worker's queue is full."""


class TimedOut(Exception):
    """The request's deadline passed before its answer was ready."""


class UnknownIds(DataError):
    """Item ids of a history that the index does not contain, with where they are in the request."""

    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


class Engine:
    """Runs searches on the worker's compute thread within a bounded queue and a per-request timeout."""

    def __init__(self, max_pending: int = 256, timeout: float = 10.0):
        self.max_pending = max_pending
        self.timeout = timeout
        self.pending = 0  # searches queued or running; only touched on the event loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseidx-search")

    def close(self) -> None:
        """Stop the compute thread (queued searches are cancelled, a running one finishes)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_small(self, fn, *args):
        """Like ``run``, but ``fn(*args)`` is computed at once on the event loop when no search is queued."""
        if self.pending == 0:
            return fn(*args)
        return await self.run(fn, *args)

    async def run(self, fn, *args):
        """``fn(*args)`` on the compute thread; Overloaded when the queue is full, TimedOut past the deadline."""
        if self.pending >= self.max_pending:
            raise Overloaded()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout
        self.pending += 1
        future = self._executor.submit(_before, deadline, fn, *args)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._done))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise TimedOut() from None

    def _done(self) -> None:
        self.pending -= 1


def _before(deadline: float, fn, *args):
    if time.monotonic() > deadline:
        raise TimedOut()
    return fn(*args)


def parse_options(gen: Generation, options: dict, threads: int):
    """The index's search options from a request's ``options`` (DataError naming a bad knob), on ``threads``.

    Parsed once per distinct set of options and build (clients repeat the same few).
    """
    if "threads" in options:
        raise DataError("threads is the server's setting (sparseidx serve --threads), not a request's")
    key = (threads, *sorted((name, type(value).__name__, value) for name, value in options.items()))
    opts = gen.options.get(key)
    if opts is None:
        opts = gen.index.Options.parse({**options, "threads": threads})
        if len(gen.options) >= 1024:
            gen.options.clear()
        gen.options[key] = opts
    return opts


def recommend(gen: Generation, histories: list, k: int, opts, exclude, allow, where: str) -> list[dict]:
    """Answers for ``histories`` from one build, as the JSON the service returns (padding dropped).

    ``opts`` are the index's parsed search options. Unknown history ids raise
    ``UnknownIds`` naming their place in the request (``where``: ``history`` or
    ``histories``) unless ``opts.skip_unknown`` drops them.
    """
    if opts.skip_unknown:
        histories = _known(gen, histories, True, where)
    try:
        res = gen.index.search_detailed(histories, k, opts, exclude=exclude, allow=allow)
    except UnknownItemError:
        _known(gen, histories, False, where)
        raise
    item_ids = gen.index.item_ids
    out = []
    for q in range(len(histories)):
        row = res.ids[q]
        valid = row >= 0
        out.append({"items": item_ids[row[valid]].tolist(), "scores": res.scores[q][valid].tolist(),
                    "popular": bool(res.popular[q])})
    return out


def _known(gen: Generation, histories: list, skip: bool, where: str) -> list:
    """The histories with unknown ids dropped (``skip``), or an UnknownIds naming the first one."""
    lengths = [len(h) for h in histories]
    flat = [i for h in histories for i in h]
    if not flat:
        return histories
    _, found = gen.lookup.lookup(np.array(flat, dtype=object if len({type(v) for v in flat}) > 1 else None))
    if found.all():
        return histories
    ends = np.cumsum(lengths)
    if skip:
        return [[i for i, ok in zip(h, found[e - n: e]) if ok] for h, n, e in zip(histories, lengths, ends)]
    at = int(np.flatnonzero(~found)[0])
    q = int(np.searchsorted(ends, at, side="right"))
    pos = at - int(ends[q] - lengths[q])
    place = f"body.history[{pos}]" if where == "history" else f"body.histories[{q}][{pos}]"
    missing = int((~found).sum())
    raise UnknownIds(f"unknown item id {flat[at]!r}" + (f" and {missing - 1} more" if missing > 1 else "")
                     + " (set options.skip_unknown to drop unknown ids)", place)
