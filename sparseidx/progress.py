"""Progress and stage logging through the ``sparseidx`` logger.

Every step longer than a few seconds reports while it runs: countable work (items,
users, epochs) as a bar with rate and ETA on a terminal and as a line every
``HEARTBEAT_SECONDS`` in logs; one long call (a LAPACK factorization) as an
elapsed-time heartbeat. The library only logs: the CLI shows it on stderr with
``enable()``; a Python caller shows it with ``enable()`` or its own logging setup,
e.g. ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("sparseidx")
HEARTBEAT_SECONDS = 10.0
_bars_enabled = False


def enable(verbosity: int = 1) -> None:
    """Send sparseidx logs to stderr (0: warnings only, 1: info and progress, 2: debug)."""
    global _bars_enabled
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel([logging.WARNING, logging.INFO, logging.DEBUG][max(0, min(verbosity, 2))])
    log.propagate = False
    _bars_enabled = verbosity >= 1 and sys.stderr.isatty()


@contextmanager
def stage(message: str):
    """Log the start, an elapsed-time heartbeat while it runs, and the duration of one stage."""
    log.info("%s ...", message)
    start = time.perf_counter()
    done = threading.Event()

    def beat():
        while not done.wait(HEARTBEAT_SECONDS):
            log.info("%s ... %s elapsed", message, _duration(time.perf_counter() - start))

    heartbeat = threading.Thread(target=beat, name="sparseidx-heartbeat", daemon=True)
    if log.isEnabledFor(logging.INFO):
        heartbeat.start()
    try:
        yield
    finally:
        done.set()
    log.info("%s done in %.2f s", message, time.perf_counter() - start)


class _Lines:
    """Progress of countable work as a log line every HEARTBEAT_SECONDS: done, share, rate, ETA."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= HEARTBEAT_SECONDS and self.done < self.total:
            self.last = now
            rate = self.done / (now - self.start)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %s / %s (%.0f%%), %s/s, ETA %s", self.label, f"{self.done:,}", f"{self.total:,}",
                     100.0 * self.done / max(self.total, 1), f"{rate:,.0f}", _duration(eta))


@contextmanager
def counter(total: int, label: str = ""):
    """Progress advanced by ``update(n)``: a bar with ETA on a terminal, periodic log lines otherwise."""
    if not _bars_enabled:
        lines = _Lines(total, label)
        yield lines
        if lines.done and time.perf_counter() - lines.start >= HEARTBEAT_SECONDS:
            log.info("%s: %s done in %s", label, f"{lines.done:,}", _duration(time.perf_counter() - lines.start))
        return
    import click

    with click.progressbar(length=total, label=label, file=sys.stderr) as progress:
        yield progress


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
