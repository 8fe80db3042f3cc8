"""Atomic outputs: a file or directory appears whole under its name, or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from .errors import DataError


@contextlib.contextmanager
def atomic_output(out: str, overwrite: bool, directory: bool = False):
    """Yield a temporary path next to ``out``; on success it replaces ``out``, on failure it vanishes."""
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not overwrite:
        raise DataError(f"{out} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())  # as open() and mkdir() would: temp files are private
        if directory and os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "x"))
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write ``text`` to the file ``path`` atomically, replacing any previous one."""
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
