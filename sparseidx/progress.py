"""Progress and stage logging through the ``sparseidx`` logger.

Every step longer than a few seconds reports while it runs: countable work (items,
users, epochs) as a bar with rate and ETA on a terminal and as a line every
``HEARTBEAT_SECONDS`` in logs; one long call (a LAPACK or CHOLMOD factorization) as an
elapsed-time heartbeat. The library only logs: the CLI shows it on stderr with
``enable()``; a Python caller shows it with ``enable()`` or its own logging setup,
e.g. ``logging.basicConfig(level=logging.INFO)``.

The heartbeat of a stage comes from a thread, which cannot run while a C library holds
the GIL (CHOLMOD does, for minutes on a large catalogue). After ``enable()`` it comes
instead from a small watchdog process that the stages tell when they start and end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("sparseidx")
HEARTBEAT_SECONDS = 10.0
_bars_enabled = False

# the watchdog: reads "start MESSAGE" / "end" lines; while a stage is open and nothing came for
# a heartbeat, prints "MESSAGE ... Ns elapsed" to stderr; exits when its input closes
_WATCHDOG = r"""
import os, select, sys, time
beat, stack, last, pending = float(sys.argv[1]), [], time.monotonic(), b""
while True:
    ready = select.select([0], [], [], beat)[0]
    now = time.monotonic()
    if ready:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            kind, _, text = line.decode("utf-8", "replace").partition(" ")
            if kind == "start":
                stack.append((text, now))
            elif stack:
                stack.pop()
        last = now
    elif stack and now - last >= beat:
        text, began = stack[-1]
        seconds = int(round(now - began))
        took = f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
        os.write(2, f"{text} ... {took} elapsed\n".encode())
        last = now
"""


class _Watchdog:
    """A child process that prints the open stage's heartbeat, whatever holds this process's GIL."""

    def __init__(self):
        self.enabled = False
        self._proc = None

    def tell(self, line: str) -> bool:
        """Send one line; False when no watchdog runs (then the caller beats by itself)."""
        if not self.enabled:
            return False
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen([sys.executable, "-S", "-c", _WATCHDOG, str(HEARTBEAT_SECONDS)],
                                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)
            os.write(self._proc.stdin.fileno(), (line.replace("\n", " ") + "\n").encode())
            return True
        except OSError:
            self.enabled = False
            return False


_watchdog = _Watchdog()


def enable(verbosity: int = 1) -> None:
    """Send sparseidx logs to stderr (0: warnings only, 1: info and progress, 2: debug)."""
    global _bars_enabled
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel([logging.WARNING, logging.INFO, logging.DEBUG][max(0, min(verbosity, 2))])
    log.propagate = False
    _bars_enabled = verbosity >= 1 and sys.stderr.isatty()
    _watchdog.enabled = verbosity >= 1


@contextmanager
def stage(message: str):
    """Log the start, an elapsed-time heartbeat while it runs, and the duration of one stage."""
    log.info("%s ...", message)
    start = time.perf_counter()
    done = threading.Event()

    def beat():
        while not done.wait(HEARTBEAT_SECONDS) and not done.is_set():  # wait() may time out as it is set
            log.info("%s ... %s elapsed", message, _duration(time.perf_counter() - start))

    watched = log.isEnabledFor(logging.INFO) and _watchdog.tell(f"start {message}")
    if log.isEnabledFor(logging.INFO) and not watched:
        threading.Thread(target=beat, name="sparseidx-heartbeat", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        if watched:
            _watchdog.tell("end")
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
