"""``sparseidx serve``: an HTTP service over an index (parsing only; see sparseidx.serve)."""

from __future__ import annotations

import os

import click

from sparseidx.serve.config import ServeConfig
from sparseidx.serve.run import serve as run

from .common import FiniteFloat, IndexPath


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes sharing the port and the memory-mapped index; a dead one is replaced.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of one batch request's search [default: cores / workers].")
@click.option("--max-pending", type=click.IntRange(min=1), default=256, show_default=True,
              help="Searches waiting or running per worker; more are refused with 503.")
@click.option("--timeout", type=FiniteFloat(0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request may wait for its answer before a 503.")
@click.option("--max-body", type=click.IntRange(min=1024), default=4 << 20, show_default=True,
              help="Largest request body in bytes (413 beyond).")
@click.option("--watch-interval", type=FiniteFloat(0, min_open=True), default=0.5, show_default=True,
              help="Seconds between checks for a replaced index (hot swap).")
@click.pass_context
def serve(ctx, index, host, port, workers, threads, max_pending, timeout, max_body, watch_interval):
    """Serve recommendations over HTTP (JSON; OpenAPI at /openapi.json).

    \b
    Examples:
      sparseidx serve book.idx --port 8080
      curl -s localhost:8080/v1/recommend -d '{"history": [17, 42, 99], "k": 10}'
      sparseidx serve book.idx --host 0.0.0.0 --workers 2
    Rebuilding the index in place (build --overwrite) switches the service to the new
    build between requests. Needs the serve extra: pip install -e '.[serve]'.
    """
    root = ctx.find_root().params  # the workers log as the command group's -v / -q say
    verbosity = 0 if root.get("quiet") else 1 + root.get("verbose", 0)
    config = ServeConfig(os.path.abspath(index), watch_interval, max_pending, timeout,
                         threads or max(1, (os.cpu_count() or 1) // workers), max_body, verbosity)
    run(config, host, port, workers)
