"""Starting the service on uvicorn: one process, or a supervisor of ``workers`` processes.

Every worker builds the same application from a configuration passed in the environment and
memory-maps the same index files, so N workers share one copy of the index in the page cache.
With several workers each one listens on its own socket bound with SO_REUSEPORT, so the kernel
spreads connections evenly over them. (uvicorn's own supervisor shares one socket: the worker
that wakes first accepts every pending connection, and 16 keep-alive clients measured all on one
worker, half the throughput of two.) The supervisor replaces a worker that dies, even by SIGKILL;
the others keep serving meanwhile, and SIGINT / SIGTERM stop every worker gracefully.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import threading

from ..errors import DataError, require
from ..index import Index
from ..progress import log
from .config import ServeConfig

FEATURE = "sparseidx serve"
APP = "sparseidx.serve.app:app_from_env"
CHECK_SECONDS = 0.5  # how often the supervisor looks for dead workers
STOP_SECONDS = 10  # a worker still running this long after SIGTERM is killed
BACKLOG = 2048


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Serve the index of ``config`` until interrupted (SIGINT / SIGTERM stop gracefully)."""
    uvicorn = require("uvicorn", "serve", FEATURE)
    require("starlette", "serve", FEATURE)
    require("pydantic", "serve", FEATURE)
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    Index.open(config.index)  # a broken index fails here, as one line, before any worker starts
    family, address = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # a port in use fails here, as one line
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise DataError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
        address = probe.getsockname()[:2]  # --port 0: the port the system chose, for every worker
    config.to_env()
    log.info("serving %s on http://%s:%d with %d worker(s)", config.index, host, address[1], workers)
    if workers == 1:
        uvicorn.run(APP, factory=True, host=host, port=address[1], **_uvicorn_options(config.verbosity))
    else:
        _supervise(family, address, workers, config.verbosity)


def _uvicorn_options(verbosity: int) -> dict:
    return {"access_log": False, "log_level": ("warning", "info", "debug")[min(verbosity, 2)],
            "timeout_graceful_shutdown": 5, "server_header": False}


def _address(host: str, port: int) -> tuple[int, tuple]:
    """(address family, socket address) of ``host``:``port``."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise DataError(f"cannot listen on {host!r}: {exc.strerror}; give an address such as 127.0.0.1") from None
    return family, address


def _worker(family: int, address: tuple, verbosity: int) -> None:
    """One worker process: its own SO_REUSEPORT socket on the shared port, uvicorn on it."""
    import uvicorn

    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    uvicorn.Server(uvicorn.Config(APP, factory=True, **_uvicorn_options(verbosity))).run(sockets=[sock])


def _supervise(family: int, address: tuple, workers: int, verbosity: int) -> None:
    """Run ``workers`` worker processes, replace any that dies, stop them all on SIGINT / SIGTERM."""
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def start():
        p = spawn.Process(target=_worker, args=(family, address, verbosity), name="sparseidx-serve-worker")
        p.start()
        return p

    procs = [start() for _ in range(workers)]
    try:
        while not stop.wait(CHECK_SECONDS):
            for i, p in enumerate(procs):
                if not p.is_alive():
                    log.warning("worker %d (pid %d) exited with code %s; starting a new one", i, p.pid, p.exitcode)
                    procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(STOP_SECONDS)
            if p.is_alive():
                p.kill()
                p.join()
