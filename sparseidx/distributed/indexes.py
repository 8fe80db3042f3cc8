"""An index opened once per worker process: by a path all workers see, or copied once from an fsspec URL.

A URL's index is copied to local disk under ``SPARSEIDX_INDEX_CACHE`` (default: the
system's temporary directory), in a folder named by the SHA-256 of its manifest, which
lists every file's checksum; the copy is then opened (memory-mapped and verified) like
any index. A later job on the same build reuses the copy; a new build gets a new folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import threading

from ..errors import DataError, IndexFormatError, require
from ..index import Index
from ..index import format as fmt

CACHE_ENV = "SPARSEIDX_INDEX_CACHE"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_lock = threading.Lock()
_opened: dict[tuple[str, str | None], object] = {}


def is_url(location: str) -> bool:
    """Whether ``location`` is an fsspec URL (``file://``, ``s3://``, ...) rather than a path."""
    return bool(_URL.match(str(location)))


def open_index(location: str, build_id: str | None = None):
    """The index at ``location`` (path or URL), opened once per process; refuses another build than ``build_id``."""
    key = (str(location), build_id)
    with _lock:
        if key not in _opened:
            index = _open_copy(location) if is_url(location) else Index.open(location)
            found = index.manifest.get("build_id")
            if build_id is not None and found != build_id:
                raise DataError(f"{location}: the index was replaced during the job (build {found}, the job "
                                f"started on {build_id}); run the job again")
            _opened.clear()  # one index per worker: a new job's index replaces the last one
            _opened[key] = index
        return _opened[key]


def _open_copy(url: str):
    """Open the local copy of ``url``; a damaged copy is removed (the next attempt copies it again)."""
    path = local_copy(url)
    try:
        return Index.open(path)
    except IndexFormatError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise IndexFormatError(f"{url}: its local copy was damaged and is removed; run the job again ({exc})") from None


def local_copy(url: str) -> str:
    """A local copy of the index at ``url``, made once per build (keyed by its manifest's checksum)."""
    fsspec = require("fsspec", "dask", "an index given as a URL")
    try:
        fs, root = fsspec.core.url_to_fs(url)
        raw = fs.cat_file(posixpath.join(root, fmt.MANIFEST))
    except (OSError, ValueError, ImportError) as exc:
        raise IndexFormatError(f"{url}: cannot read {fmt.MANIFEST}: {str(exc)[:200]}") from None
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise IndexFormatError(f"{url}/{fmt.MANIFEST}: not JSON") from None
    fmt.check_manifest(url, manifest)
    cache = os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "sparseidx-index-cache")
    target = os.path.join(cache, hashlib.sha256(raw).hexdigest()[:32])
    if os.path.isdir(target):
        return target
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".copy-", dir=cache)
    try:
        for name in manifest["files"]:
            if "/" in name or name in (".", ".."):
                raise IndexFormatError(f"{url}/{fmt.MANIFEST}: file name {name!r} is not a plain name")
            fs.get_file(posixpath.join(root, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, fmt.MANIFEST), "wb") as fh:
            fh.write(raw)
        with contextlib.suppress(OSError):  # another process of this machine may have made it meanwhile
            os.rename(tmp, target)
    except OSError as exc:
        raise IndexFormatError(f"{url}: copying the index to {cache} failed: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
