"""Index files checked once per file version and remembered, so that opening a large index is fast.

``Index.open`` checks every file's SHA-256 against the manifest, then its values: ids in range,
weights finite. Both read every byte (hashing runs at about 0.5 GB/s here), so a 1 GB index took
over 2 s to open. A file that passed both is remembered in the user's cache (``verified.json`` in
``$SPARSEIDX_CACHE_DIR``, else ``$XDG_CACHE_HOME/sparseidx``, else ``~/.cache/sparseidx``) by its
device, inode, size, modification and change times, the SHA-256 it matched and a digest of the
manifest it was checked against; opening it again with the same identity, SHA-256 and manifest skips
both (what stays on every open is O(items + dims): sizes, the Arrow schemas, list offsets). Any
write to a file changes its change time (ctime), which no system call can set back, so a modified
file is checked again; a rebuilt index is new files with new inodes; an edited manifest is a new
context. ``sparseidx verify`` (``Index.verify``) always checks everything. Remembering is best
effort: an unreadable or unwritable cache only means checking again. Set
``SPARSEIDX_REMEMBER_VERIFIED=0`` to check everything on every open.
"""

from __future__ import annotations

import json
import os

from ..progress import log

FILE = "verified.json"
MAX_ENTRIES = 4096  # files remembered; the oldest are forgotten first


def enabled() -> bool:
    """Whether checked files are remembered (``SPARSEIDX_REMEMBER_VERIFIED`` is not ``0``)."""
    return os.environ.get("SPARSEIDX_REMEMBER_VERIFIED", "1") != "0"


def cache_dir() -> str:
    """Where the record of verified files lives."""
    explicit = os.environ.get("SPARSEIDX_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sparseidx")


def identity(st: os.stat_result) -> tuple[str, list[int]]:
    """(key, version) of a file: the key names the file, the version changes with any write to it."""
    return f"{st.st_dev}:{st.st_ino}", [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def load() -> dict:
    """The remembered files (empty when there is no readable record)."""
    try:
        with open(os.path.join(cache_dir(), FILE), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def is_known(record: dict, st: os.stat_result, sha256: str, context: str) -> bool:
    """Whether this version of the file passed its checks against ``sha256`` in ``context`` before."""
    key, version = identity(st)
    entry = record.get(key)
    return isinstance(entry, list) and entry == [*version, sha256, context]


def remember(verified: list[tuple[os.stat_result, str]], context: str) -> None:
    """Add files that just matched their SHA-256 and passed the checks of ``context`` to the record (atomic
    replace; failures only logged)."""
    if not verified:
        return
    record = load()
    for st, sha256 in verified:
        key, version = identity(st)
        record.pop(key, None)
        record[key] = [*version, sha256, context]  # insertion order: the newest last
    while len(record) > MAX_ENTRIES:
        record.pop(next(iter(record)))
    directory = cache_dir()
    tmp = os.path.join(directory, f".{FILE}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, os.path.join(directory, FILE))
    except OSError as exc:
        log.debug("could not remember verified index files in %s: %s", directory, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
