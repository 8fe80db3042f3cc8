"""Index directory format v1: a JSON manifest plus uncompressed Arrow IPC files.

Layout of INDEX/ (sparse backend):
  manifest.json     format name and version, backend, model, counts, parameters,
                    build options, a build id, and the byte size and SHA-256 of every file
  postings.arrow    one row per dimension: items large_list<int32>, weights
                    large_list<float32> (impact order: |weight| descending),
                    max_abs float32, length int64
  encoder.arrow     one row per item: dims large_list<int32>, weights large_list<float32>
  items.arrow       one row per item: item_id, prior float32[, popularity int64]
  forward.arrow     (only when the indexed item rows differ from the encoder) like encoder.arrow
  deny.arrow        (only with a deny list, ``sparseidx deny``) item int32: items never returned
The FAISS backend holds vectors.faiss, encoder.arrow (fixed-size lists) and items.arrow (and deny.arrow).
Every write gets a new ``generation`` id; a build (not a deny list) also a new ``build_id``.

Writing: a directory is built under a temporary name and exchanged with the old one in
one step (``files.atomic_output``), so INDEX holds one whole build at every instant.
Reading: the directory is opened once as a descriptor, and the manifest and every file
are opened through it, never by path: what a reader maps belongs to that one build even
if a writer replaces INDEX meanwhile (a build removed under a reader is opened again from
the new one). The directory is untrusted input: only the format's own file names are
opened, as regular files (no links, devices or FIFOs), the manifest is read with a size
bound and checked field by field, every file the backend needs must be listed and match
its size (and, with ``verify``, its SHA-256), every Arrow file must carry the manifest's
build id, and the arrays are checked against the counts before any kernel reads them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import re
import stat
import time
import uuid
from typing import Callable

import numpy as np
import pyarrow as pa

from .. import __version__
from ..errors import IndexFormatError
from ..files import OutputKind, atomic_output, check_output
from ..plain import json_default
from . import verified

FORMAT_NAME = "sparseidx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_KEY = b"sparseidx"
MAX_MANIFEST_BYTES = 1 << 20
BACKEND_FILES = {"sparse": ("postings.arrow", "encoder.arrow", "items.arrow"),
                 "faiss": ("vectors.faiss", "encoder.arrow", "items.arrow")}
DENY_FILE = "deny.arrow"
FORMAT_FILES = frozenset({MANIFEST, "forward.arrow", DENY_FILE,
                          *(n for names in BACKEND_FILES.values() for n in names)})
_OPEN_ATTEMPTS = 50  # opens retried while writers keep replacing the index under a reader


def list_array(indptr: np.ndarray, values: np.ndarray) -> pa.LargeListArray:
    """A large_list array (one list per row) from CSR-style offsets and values, zero copy."""
    return pa.LargeListArray.from_arrays(pa.array(np.asarray(indptr, dtype=np.int64)), pa.array(values))


def list_pair(table: pa.Table, ids: str, weights: str, rows: int, path: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, ids int32, weights float32) numpy views of two large_list columns sharing their offsets.

    Raises IndexFormatError unless there are ``rows`` lists with valid, shared offsets.
    """
    offsets, id_values = _list_parts(table[ids], np.int32, path, ids)
    offsets2, weight_values = _list_parts(table[weights], np.float32, path, weights)
    if len(offsets) - 1 != rows or not np.array_equal(offsets, offsets2):
        raise IndexFormatError(f"{path}: index files disagree with the manifest's counts "
                               f"(a file has {len(offsets) - 1} rows where {rows} were expected)")
    return offsets, id_values, weight_values


def _list_parts(column: pa.ChunkedArray, dtype, path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    arr = _one_chunk(column)
    if not pa.types.is_large_list(arr.type) or arr.null_count:
        raise IndexFormatError(f"{path}: column {name!r} is not a large_list without nulls")
    offsets = _view(arr, np.int64, len(arr) + 1)
    values = arr.values
    if values.type != pa.from_numpy_dtype(dtype) or values.null_count:
        raise IndexFormatError(f"{path}: column {name!r} holds {values.type}, not {np.dtype(dtype)}")
    values = _view(values, dtype, len(values))
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any()):
        raise IndexFormatError(f"{path}: a posting list column has inconsistent offsets")
    return offsets, values


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk (no copy; the format writes one record batch), else joined."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _view(arr: pa.Array, dtype, count: int) -> np.ndarray:
    """The first ``count`` values of ``arr``'s data buffer (offsets of a list, values of a primitive array)
    as a numpy view of ``dtype``: no copy, no page touched."""
    dtype = np.dtype(dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=count, offset=arr.offset * dtype.itemsize)


def _whole(table: pa.Table, name: str, rows: int, path: str) -> pa.ChunkedArray:
    """Column ``name``, refused unless it holds ``rows`` values and no null."""
    col = table[name]
    if col.null_count or len(col) != rows:
        raise IndexFormatError(f"{path}: column {name!r} has {len(col)} values ({col.null_count} null); "
                               f"expected {rows}")
    return col


def column(table: pa.Table, name: str, dtype, rows: int, path: str) -> np.ndarray:
    """A numpy view of a non-null numeric column of ``rows`` values of ``dtype``."""
    col = _whole(table, name, rows, path)
    if col.type != pa.from_numpy_dtype(dtype):
        raise IndexFormatError(f"{path}: column {name!r} holds {col.type}, not {np.dtype(dtype)}")
    return _view(_one_chunk(col), dtype, rows)


def id_column(table: pa.Table, rows: int, path: str) -> np.ndarray:
    """The item ids: ``rows`` non-null int64 or string values."""
    col = _whole(table, "item_id", rows, path)
    if not (pa.types.is_int64(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise IndexFormatError(f"{path}: item ids are {col.type}, not int64 or string")
    return _view(_one_chunk(col), np.int64, rows) if pa.types.is_int64(col.type) else col.to_numpy()


def check_ids(path: str, name: str, ids: np.ndarray, bound: int) -> None:
    """Raise IndexFormatError unless every id is in [0, bound) (kernels index arrays with them)."""
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= bound):
        raise IndexFormatError(f"{path}/{name}: ids outside 0..{bound - 1}; the file does not belong to this "
                               "index: rebuild it with 'sparseidx build'")


def check_finite(path: str, name: str, values: np.ndarray) -> None:
    """Raise IndexFormatError unless the weights of file ``name`` are finite."""
    if not np.isfinite(values).all():
        raise IndexFormatError(f"{path}/{name}: holds NaN or infinite weights; rebuild the index")


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def write_table(path: str, table: pa.Table, meta: dict) -> None:
    """Write one uncompressed Arrow IPC file with sparseidx metadata in its schema."""
    schema = table.schema.with_metadata({SCHEMA_KEY: json.dumps(meta).encode()})
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))


# ---- writing ------------------------------------------------------------------------------

def _index_foreign(path: str) -> str | None:
    """None when ``path`` is a sparseidx index directory holding only files of the format."""
    entries = set(os.listdir(path))
    if MANIFEST not in entries:
        return "it is not a sparseidx index (it has no manifest.json)"
    try:
        manifest = _load_manifest(path, path)
    except IndexFormatError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        return "its manifest.json is not a sparseidx manifest"
    foreign = sorted(entries - FORMAT_FILES - {MANIFEST + ".tmp"})
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds {shown}, which sparseidx did not write"
    return None


INDEX_DIR = OutputKind("an index directory", True, _index_foreign)


def check_index_output(path: str | os.PathLike, overwrite: bool) -> str:
    """The absolute index path if an index may be written there, else an OutputError (before any work)."""
    return check_output(path, INDEX_DIR, overwrite)


def write_index_dir(path: str, tables: dict[str, pa.Table], writers: dict[str, Callable[[str], None]],
                    manifest: dict, overwrite: bool = False, build_id: str | None = None,
                    before_commit: Callable[[], None] | None = None) -> None:
    """Atomically create or replace index directory ``path`` from Arrow tables and other files.

    ``writers`` maps names inside the index to functions that write that file at the
    path they are given (e.g. a FAISS index). The manifest gets a new generation id, a
    new build id unless ``build_id`` keeps the one of the files written (a deny list
    beside an existing build), and the size and SHA-256 of every file.
    ``before_commit`` runs last before the new directory replaces the old one (it may
    raise to cancel the write).
    """
    build_id = build_id or uuid.uuid4().hex
    generation = uuid.uuid4().hex
    with atomic_output(path, INDEX_DIR, overwrite) as tmp:
        files = {}
        meta = {"format_version": FORMAT_VERSION, "build_id": build_id, "generation": generation,
                **{k: manifest[k] for k in ("backend", "model", "n_items", "n_dims") if k in manifest}}
        for name, table in tables.items():
            write_table(os.path.join(tmp, name), table, meta)
        for name, write in writers.items():
            write(os.path.join(tmp, name))
        for name in sorted(os.listdir(tmp)):
            full = os.path.join(tmp, name)
            files[name] = {"bytes": os.path.getsize(full), "sha256": sha256_file(full)}
        manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created_by": f"sparseidx {__version__}",
                    **manifest, "build_id": build_id, "generation": generation, "files": files}
        with open(os.path.join(tmp, MANIFEST), "w") as fh:
            json.dump(manifest, fh, indent=2, default=json_default, allow_nan=False)
            fh.write("\n")
        if before_commit is not None:
            before_commit()


# ---- reading ------------------------------------------------------------------------------

class IndexFiles:
    """The manifest and files of one build of an index, opened through one directory descriptor.

    Use as a context manager (or call ``close``); arrays mapped from its tables stay valid
    after closing.
    """

    def __init__(self, path: str, manifest: dict, fds: dict[str, int]):
        self.path = path
        self.manifest = manifest
        self._fds = fds
        self._maps: dict[str, mmap.mmap] = {}
        # files whose version passed every check with this manifest before (``verified.py``): their
        # checksums and their value checks are not repeated; and files that passed now, to remember
        self._context = hashlib.blake2b(json.dumps(manifest, sort_keys=True).encode(), digest_size=16).hexdigest()
        self.trusted: set[str] = set()
        self._passed: list[tuple[os.stat_result, str]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the file descriptors (mapped tables stay valid)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def problems(self, checksums: bool = True, remembered: bool = False) -> list[str]:
        """Listed files of the wrong size or (with ``checksums``) the wrong SHA-256.

        With ``remembered``, a file whose version passed every check with this manifest
        before (``verified.py``) is not hashed again and joins ``trusted``; the files that
        pass now are remembered by ``remember_checked`` once the index's values passed too."""
        remembered = remembered and checksums and verified.enabled()
        record = verified.load() if remembered else {}
        found = []
        for name, info in self.manifest["files"].items():
            st = os.fstat(self._fds[name])
            if st.st_size != info["bytes"]:
                found.append(f"{name}: {st.st_size} bytes, manifest says {info['bytes']} (truncated or replaced)")
            elif not checksums:
                continue
            elif remembered and verified.is_known(record, st, info["sha256"], self._context):
                self.trusted.add(name)
            elif hashlib.sha256(self._map(name)).hexdigest() != info["sha256"]:
                found.append(f"{name}: SHA-256 does not match the manifest (file modified or corrupted)")
            elif remembered:
                self._passed.append((st, info["sha256"]))
        return found

    def ensure_intact(self, checksums: bool = True) -> None:
        """Raise IndexFormatError if any listed file is truncated or modified (checksums remembered per file
        version, see ``verified.py``)."""
        found = self.problems(checksums, remembered=True)
        if found:
            raise IndexFormatError(f"{self.path}: refusing a damaged index: " + "; ".join(found)
                                   + ". Rebuild it with 'sparseidx build'")

    def check_ids(self, name: str, ids: np.ndarray, bound: int) -> None:
        """``check_ids`` on file ``name``'s ids, unless the file is trusted."""
        if name not in self.trusted:
            check_ids(self.path, name, ids, bound)

    def check_finite(self, arrays: dict[str, np.ndarray]) -> None:
        """``check_finite`` on the weights of every named file that is not trusted."""
        for name, values in arrays.items():
            if name not in self.trusted:
                check_finite(self.path, name, values)

    def remember_checked(self) -> None:
        """Remember the files that passed their checksums and value checks in this open (``verified.py``)."""
        verified.remember(self._passed, self._context)
        self._passed = []

    def table(self, name: str) -> pa.Table:
        """Memory-map one Arrow IPC file of this build (no copy) and check it belongs to it (the deny list: to
        this generation)."""
        where = f"{self.path}/{name}"
        try:
            table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(self._map(name)))).read_all()
            table.validate()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as exc:
            raise IndexFormatError(f"{where}: not a readable Arrow IPC file: {_first_line(exc)}") from None
        raw = (table.schema.metadata or {}).get(SCHEMA_KEY)
        try:
            meta = json.loads(raw) if raw is not None else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise IndexFormatError(f"{where}: not a sparseidx Arrow file (no sparseidx metadata)")
        build_id = self.manifest.get("build_id")
        if build_id is not None and meta.get("build_id") != build_id:
            raise IndexFormatError(f"{where}: belongs to another build than the manifest "
                                   "(files of two indexes mixed); rebuild it with 'sparseidx build'")
        if name == DENY_FILE and meta.get("generation") != self.manifest.get("generation"):
            raise IndexFormatError(f"{where}: belongs to another deny list than the manifest's; set the deny list "
                                   "again with 'sparseidx deny'")
        return table

    def native_path(self, name: str) -> str:
        """A path that opens this build's file ``name`` (for libraries that read by path, e.g. FAISS)."""
        proc = f"/proc/self/fd/{self._fds[name]}"
        return proc if os.path.exists(proc) else os.path.join(self.path, name)

    def read_bytes(self, name: str) -> bytes:
        """The whole content of this build's file ``name``."""
        return bytes(self._map(name))

    def _map(self, name: str) -> mmap.mmap:
        if name not in self._maps:
            if os.fstat(self._fds[name]).st_size == 0:
                raise IndexFormatError(f"{self.path}/{name}: empty file; rebuild the index with 'sparseidx build'")
            self._maps[name] = mmap.mmap(self._fds[name], 0, access=mmap.ACCESS_READ)
        return self._maps[name]


def open_files(path: str | os.PathLike) -> IndexFiles:
    """Open the manifest and every file of the one build at ``path`` (retried while a writer replaces it)."""
    path = os.fspath(path)
    for _ in range(_OPEN_ATTEMPTS):
        try:
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            if _being_replaced(path):
                time.sleep(0.001)
                continue
            raise IndexFormatError(f"{path}: not an index directory: it does not exist "
                                   "(build one with 'sparseidx build')") from None
        except NotADirectoryError:
            raise IndexFormatError(f"{path}: not an index directory (build one with 'sparseidx build')") from None
        except PermissionError:
            raise IndexFormatError(f"{path}: no permission to read this index directory") from None
        fds: dict[str, int] = {}
        try:
            manifest = _load_manifest(path, dir_fd)
            check_manifest(path, manifest)
            for name in manifest["files"]:
                fds[name] = _open_member(dir_fd, name, path)
            return IndexFiles(path, manifest, fds)
        except FileNotFoundError as exc:
            for fd in fds.values():
                os.close(fd)
            if not _replaced(path, dir_fd):
                missing = os.path.basename(exc.filename or MANIFEST)
                if missing == MANIFEST:
                    raise IndexFormatError(f"{path}: no {MANIFEST}; not a sparseidx index or an interrupted "
                                           "write") from None
                raise IndexFormatError(f"{path}: refusing a damaged index: {missing}: missing. Rebuild it with "
                                       "'sparseidx build'") from None
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        finally:
            os.close(dir_fd)
    raise IndexFormatError(f"{path}: replaced {_OPEN_ATTEMPTS} times while being opened; try again")


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check an index's manifest; refuse unknown formats, newer versions and malformed fields."""
    with open_files(path) as files:
        return files.manifest


def _open_member(dir_fd: int, name: str, path: str) -> int:
    """A read-only descriptor of the regular file ``name`` inside the directory ``dir_fd`` (links not followed)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IndexFormatError(f"{path}: {name} is a symbolic link; index files must be regular files") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IndexFormatError(f"{path}: {name} is not a regular file")
    return fd


def _load_manifest(path: str, where) -> dict:
    """The parsed manifest of the directory ``where`` (a descriptor or a path), read with a size bound."""
    mpath = os.path.join(path, MANIFEST)
    if isinstance(where, int):
        fd = _open_member(where, MANIFEST, path)
    else:
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = _open_member(dir_fd, MANIFEST, path)
        finally:
            os.close(dir_fd)
    try:
        if os.fstat(fd).st_size > MAX_MANIFEST_BYTES:
            raise IndexFormatError(f"{mpath}: {os.fstat(fd).st_size:,} bytes, larger than any manifest "
                                   f"sparseidx writes ({MAX_MANIFEST_BYTES:,} at most)")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IndexFormatError(f"{mpath}: unreadable manifest: {_first_line(exc)}") from None
    finally:
        os.close(fd)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def check_manifest(path: str, manifest) -> None:
    """Raise IndexFormatError unless ``manifest`` is a supported one with well-formed fields."""
    mpath = os.path.join(path, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{mpath}: not a sparseidx manifest")
    version = manifest.get("format_version")
    if not _is_int(version):
        raise IndexFormatError(f"{mpath}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version} was written by {_short(manifest.get('created_by'))}; "
            f"this sparseidx {__version__} reads format versions up to {FORMAT_VERSION}: upgrade sparseidx")
    if version < 1:
        raise IndexFormatError(f"{mpath}: format_version {version} does not exist")
    backend = manifest.get("backend")
    if not isinstance(backend, str) or backend not in BACKEND_FILES:
        raise IndexFormatError(f"{path}: unknown index backend {_short(backend)}")
    for key in ("n_items", "n_dims"):
        if not _is_int(manifest.get(key)) or manifest[key] < 0:
            raise IndexFormatError(f"{mpath}: {key} is missing or not a non-negative integer")
    for key, kind in (("model", str), ("params", dict), ("build_id", str), ("generation", str),
                      ("faiss_index", str), ("deny", dict)):
        if key in manifest and not isinstance(manifest[key], kind):
            raise IndexFormatError(f"{mpath}: {key} is not a {kind.__name__}")
    if backend == "sparse" and manifest.get("forward_index", "encoder") not in ("encoder", "forward.arrow"):
        raise IndexFormatError(f"{mpath}: forward_index must be 'encoder' or 'forward.arrow', not "
                               f"{_short(manifest.get('forward_index'))}")
    point = manifest.get("operating_point")
    if point is not None and not (isinstance(point, dict) and isinstance(point.get("knobs"), dict)
                                  and _is_int(point.get("k")) and isinstance(point.get("target_recall"), (int, float))
                                  and all(isinstance(key, str) for key in point["knobs"])):
        raise IndexFormatError(f"{mpath}: operating_point needs 'knobs' (an object), 'k' and 'target_recall'")
    if "deny" in manifest and (not _is_int(manifest["deny"].get("items")) or manifest["deny"]["items"] < 0):
        raise IndexFormatError(f"{mpath}: deny.items is missing or not a non-negative integer")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexFormatError(f"{mpath}: lists no files")
    want = set(required_files(manifest))
    if set(files) != want:
        odd = sorted(map(str, set(files) - want))
        missing = sorted(want - set(files))
        raise IndexFormatError(
            f"{mpath}: the file list does not match a {backend} index"
            + (f"; unlisted: {', '.join(missing)}" if missing else "")
            + (f"; not part of the format: {_short(', '.join(odd))}" if odd else "")
            + ". Rebuild it with 'sparseidx build'")
    for name, info in files.items():
        if (not isinstance(info, dict) or not _is_int(info.get("bytes")) or info["bytes"] < 0
                or not isinstance(info.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", info["sha256"])):
            raise IndexFormatError(f"{mpath}: the entry of {name} needs 'bytes' (an integer) and 'sha256' "
                                   "(64 hex digits)")


def required_files(manifest: dict) -> tuple[str, ...]:
    """The files an index with this manifest must list (and may list no others)."""
    backend = manifest["backend"]
    names = BACKEND_FILES[backend]
    if backend == "sparse" and manifest.get("forward_index", "encoder") == "forward.arrow":
        names += ("forward.arrow",)
    if "deny" in manifest:
        names += (DENY_FILE,)
    return names


def _replaced(path: str, dir_fd: int) -> bool:
    """Whether ``path`` names another directory than ``dir_fd`` now (a writer replaced the index)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    was = os.fstat(dir_fd)
    return (now.st_dev, now.st_ino) != (was.st_dev, was.st_ino)


def _being_replaced(path: str) -> bool:
    """Whether a writer's temporary of ``path`` exists beside it (the moment of a two-rename swap)."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        return any(e.startswith(f".{name}.tmp-") for e in os.listdir(parent))
    except OSError:
        return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return _short(lines[0] if lines else type(exc).__name__, 200)


def index_bytes(manifest: dict) -> int:
    """Total size of an index's files in bytes."""
    return int(sum(f["bytes"] for f in manifest["files"].values()))
