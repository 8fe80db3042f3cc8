"""Progress and stage logging on stderr; silent unless the application enables it."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

log = logging.getLogger("sparseidx")
_bars_enabled = False


def enable(verbosity: int = 1) -> None:
    """Send sparseidx logs to stderr (0: warnings only, 1: info and progress bars, 2: debug)."""
    global _bars_enabled
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel([logging.WARNING, logging.INFO, logging.DEBUG][max(0, min(verbosity, 2))])
    log.propagate = False
    _bars_enabled = verbosity >= 1 and sys.stderr.isatty()


@contextmanager
def stage(message: str):
    """Log the start and the duration of one stage of a long computation."""
    log.info("%s ...", message)
    start = time.perf_counter()
    yield
    log.info("%s done in %.2f s", message, time.perf_counter() - start)


def bar(iterable, length: int | None = None, label: str = ""):
    """Wrap an iterable in a progress bar on stderr when bars are enabled."""
    if not _bars_enabled:
        return _passthrough(iterable)
    import click

    return click.progressbar(iterable, length=length, label=label, file=sys.stderr)


@contextmanager
def _passthrough(iterable):
    yield iterable


class _Silent:
    def update(self, n: int) -> None:
        pass


@contextmanager
def counter(total: int, label: str = ""):
    """A progress bar advanced by ``update(n)`` (for work that comes in batches of known size)."""
    if not _bars_enabled:
        yield _Silent()
        return
    import click

    with click.progressbar(length=total, label=label, file=sys.stderr) as progress:
        yield progress
