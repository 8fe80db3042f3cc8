"""Starting the service on uvicorn, with one process or a supervisor of ``workers`` processes.

Every worker builds the same application from a configuration passed in the environment and
memory-maps the same index files, so N workers share one copy of the index in the page
cache. uvicorn's multiprocess supervisor replaces a worker that dies (even by SIGKILL); the
others keep accepting on the shared socket meanwhile.
"""

from __future__ import annotations

from ..errors import DataError, require
from ..index import Index
from ..progress import log
from .config import ServeConfig

FEATURE = "sparseidx serve"


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Serve the index of ``config`` until interrupted (SIGINT / SIGTERM stop gracefully)."""
    uvicorn = require("uvicorn", "serve", FEATURE)
    require("starlette", "serve", FEATURE)
    require("pydantic", "serve", FEATURE)
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    Index.open(config.index)  # a broken index fails here, as one line, before any worker starts
    config.to_env()
    log.info("serving %s on http://%s:%d with %d worker(s)", config.index, host, port, workers)
    uvicorn.run("sparseidx.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level=("warning", "info", "debug")[min(config.verbosity, 2)],
                timeout_graceful_shutdown=5, server_header=False)
