"""Where a job runs: a LocalCluster started for it, a running Dask scheduler, or a client the caller holds."""

from __future__ import annotations

import contextlib
import re

from ..errors import DataError, SparseIdxError, require

SCHEDULER_HELP = "local:N (N worker processes on this machine) or tcp://HOST:PORT (a running dask scheduler)"
MAX_LOCAL_WORKERS = 256
CONNECT_TIMEOUT = "20s"
_LOCAL = re.compile(r"local:([0-9]{1,4})")
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):([0-9]{1,5})")


def parse_scheduler(spec: str) -> tuple[str, object]:
    """``("local", N)`` or ``("tcp", "tcp://HOST:PORT")`` from a scheduler string, else a one-line DataError."""
    text = str(spec).strip()
    local = _LOCAL.fullmatch(text)
    if local and 1 <= int(local.group(1)) <= MAX_LOCAL_WORKERS:
        return "local", int(local.group(1))
    tcp = _TCP.fullmatch(text)
    if tcp and 1 <= int(tcp.group(2)) <= 65535:
        return "tcp", text
    shown = text if len(text) <= 60 else text[:60] + "..."
    raise DataError(f"scheduler {shown!r} is not {SCHEDULER_HELP}, with 1 <= N <= {MAX_LOCAL_WORKERS} "
                    "and a port in 1..65535")


@contextlib.contextmanager
def connect(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (a string, see ``parse_scheduler``, or a Client, used as is).

    A LocalCluster started here runs N single-threaded worker processes on loopback
    and is stopped on exit; a client made here is closed on exit.
    """
    distributed = require("distributed", "dask", "--scheduler (Dask)")
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    kind, value = parse_scheduler(scheduler)
    with contextlib.ExitStack() as stack:
        if kind == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=value, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=40))
            address = cluster.scheduler_address
        else:
            address = value
        try:
            client = stack.enter_context(distributed.Client(address, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as exc:
            raise SparseIdxError(f"could not reach the dask scheduler at {address}: {_first_line(exc)}; "
                                 "start one with 'dask scheduler' (and workers with 'dask worker ADDRESS')") from None
        yield client


def workers(client) -> int:
    """Worker processes the scheduler knows now."""
    return len(client.nthreads())


def outcome(future, where: str):
    """A finished task's result, or its failure as one line naming ``where`` (a partition's file)."""
    try:
        return future.result()
    except SparseIdxError:
        raise
    except Exception as exc:  # noqa: BLE001 (the worker's own error, or Dask's: KilledWorker, a lost link)
        raise SparseIdxError(f"{where}: the task failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
