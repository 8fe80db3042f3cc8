"""Outputs that appear whole or not at all, and an ``--overwrite`` that replaces only what sparseidx wrote.

An output is written to a temporary sibling ``.NAME.tmp-HOST-PID-RANDOM`` and moved into
place in one step: ``rename`` for a file; for a directory that already exists, an atomic
exchange of the two directories (Linux ``renameat2(RENAME_EXCHANGE)``), after which the old
one, now at the temporary name, is removed. At every instant the target holds the old or
the new output. A failed write removes its temporary; one left by a crash (its process is
gone) is removed by the next successful write of the same target.

``--overwrite`` replaces an existing output only when its ``OutputKind`` recognises it as
one sparseidx wrote (an index directory of its format, a Feast repository it made, a file
of the format it writes); anything else is refused and left untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from typing import Callable

from .errors import OutputError
from .progress import log

# errors of the file system that a user fixes by freeing space or choosing another place
_WRITE_ERRORS = {errno.ENOSPC: "free some space or choose another location",
                 errno.EDQUOT: "free some space or choose another location",
                 errno.EFBIG: "the file is larger than this file system or ulimit -f allows",
                 errno.EROFS: "the file system is read-only; choose another location",
                 errno.EACCES: "no permission to write there; choose another location",
                 errno.EPERM: "no permission to write there; choose another location"}
_LEGACY_STALE_SECONDS = 3600  # leftovers of sparseidx <= 0.1.0, which named no process


@dataclass(frozen=True)
class OutputKind:
    """What an output is (``what``: "a sparseidx index directory") and how to recognise one sparseidx wrote.

    ``foreign(path)`` returns None when the existing ``path`` is such an output, else the
    reason it is not (it is then never replaced).
    """

    what: str
    directory: bool
    foreign: Callable[[str], str | None]


def check_output(out: str | os.PathLike, kind: OutputKind, overwrite: bool) -> str:
    """The absolute path of ``out`` if it may be written, else an OutputError saying why (nothing is touched)."""
    out = os.path.abspath(os.fspath(out))
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise OutputError(f"{out}: the directory {parent} does not exist; create it first")
    if not os.path.lexists(out):
        return out
    if os.path.islink(out):
        raise OutputError(f"{out} is a symbolic link; sparseidx does not write through links: "
                          "give the link's target or another path")
    if kind.directory and not os.path.isdir(out):
        raise OutputError(f"{out} exists and is not a directory; choose another path for {kind.what}")
    if not kind.directory and not os.path.isfile(out):
        raise OutputError(f"{out} exists and is not a regular file; choose another path for {kind.what}")
    if kind.directory and not os.listdir(out):
        return out  # an empty directory holds nothing to lose
    if not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite (overwrite=True in Python) to replace it")
    reason = kind.foreign(out)
    if reason is not None:
        raise OutputError(f"{out}: refusing to overwrite: {reason}. --overwrite replaces only {kind.what} "
                          "that sparseidx wrote; remove it yourself or choose another path")
    return out


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, kind: OutputKind, overwrite: bool = False):
    """Yield a temporary path next to ``out``; on success it replaces ``out`` whole, on failure it vanishes.

    ``out`` is checked with ``check_output`` before and again just before the swap.
    """
    out = check_output(out, kind, overwrite)
    parent, name = os.path.split(out)
    tmp = None
    try:
        tmp = _temporary(parent, name, kind.directory)
        yield tmp
        _sync_output(tmp)
        os.chmod(tmp, (0o777 if kind.directory else 0o666) & ~_umask())  # as open() and mkdir() would
        check_output(out, kind, overwrite)  # again: the target may have changed during the work
        if kind.directory and os.path.isdir(out):
            _exchange(tmp, out)  # tmp now names the old directory
            _remove(tmp)
        else:
            os.rename(tmp, out)
        _sync(parent)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                _remove(tmp)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
            raise OutputError(f"could not write {out}: {exc.strerror}; {_WRITE_ERRORS[exc.errno]}") from None
        raise
    remove_stale(parent, name)


def write_text(path: str | os.PathLike, text: str, kind: OutputKind | None = None, overwrite: bool = True) -> None:
    """Write ``text`` to the file ``path`` atomically (by default a report, replacing one sparseidx wrote)."""
    with atomic_output(path, kind or REPORT_FILE, overwrite) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def remove_stale(parent: str, name: str) -> list[str]:
    """Remove temporaries of ``name`` in ``parent`` left by processes that are gone; returns their names."""
    host = _host()
    removed = []
    for entry in os.listdir(parent):
        if not entry.startswith(f".{name}.") or not _stale(parent, entry, name, host):
            continue
        with contextlib.suppress(OSError):
            _remove(os.path.join(parent, entry))
            removed.append(entry)
    if removed:
        log.info("removed %d leftover(s) of interrupted writes of %s: %s", len(removed), name, ", ".join(removed))
    return removed


def _temporary(parent: str, name: str, directory: bool) -> str:
    path = os.path.join(parent, f".{name}.tmp-{_host()}-{os.getpid()}-{secrets.token_hex(4)}")
    if directory:
        os.mkdir(path, 0o700)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _stale(parent: str, entry: str, name: str, host: str) -> bool:
    """Whether ``entry`` is a temporary of ``name`` whose writer is gone."""
    mine = re.fullmatch(re.escape(f".{name}.tmp-{host}-") + r"(\d+)-[0-9a-f]{8}", entry)
    if mine:
        return not _alive(int(mine.group(1)))
    if re.fullmatch(re.escape(f".{name}.") + r"(tmp|old)-[a-z0-9_]{8}", entry):  # sparseidx <= 0.1.0
        with contextlib.suppress(OSError):
            return time.time() - os.lstat(os.path.join(parent, entry)).st_mtime > _LEGACY_STALE_SECONDS
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _sync(path: str) -> None:
    """Flush one file or directory entry to disk (not what a directory holds)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_output(path: str) -> None:
    """Flush a temporary output to disk: the file, or the directory and everything written in it."""
    _sync(path)
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            for name in dirs + names:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    _sync(full)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> None:
    """Swap the paths ``a`` and ``b`` in one step; two renames where the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), b)
    log.debug("%s: this file system cannot exchange directories; replacing with two renames", b)
    aside = a + ".swap"
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_REPORT_SIGNATURES = {".json": b"{", ".md": b"#", ".png": b"\x89PNG"}


def _report_foreign(path: str) -> str | None:
    want = _REPORT_SIGNATURES.get(os.path.splitext(path)[1].lower())
    if want is None:
        return "sparseidx writes reports as .json, .md and .png files only"
    with open(path, "rb") as fh:
        head = fh.read(len(want))
    return None if head == want else f"it does not start like a {os.path.splitext(path)[1]} report"


# report.json, report.md and plots written by ``sparseidx bench`` and the benchmark scripts
REPORT_FILE = OutputKind("a report file", False, _report_foreign)
