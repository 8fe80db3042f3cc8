"""Index directory format v1: a JSON manifest plus uncompressed Arrow IPC files.

Layout of INDEX/ (sparse backend):
  manifest.json     format name and version, backend, model, counts, parameters,
                    build options, and the byte size and SHA-256 of every file
  postings.arrow    one row per dimension: items large_list<int32>, weights
                    large_list<float32> (impact order: |weight| descending),
                    max_abs float32, length int64
  encoder.arrow     one row per item: dims large_list<int32>, weights large_list<float32>
  items.arrow       one row per item: item_id, prior float32[, popularity int64]

Directories are written next to their destination and renamed into place, so a
reader never sees half an index. Opening checks the version, the sizes and (by
default) the checksums, then memory-maps the Arrow files without copying.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pyarrow as pa

from .. import __version__
from ..errors import IndexFormatError
from ..files import atomic_output

FORMAT_NAME = "sparseidx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_KEY = b"sparseidx"


def list_array(indptr: np.ndarray, values: np.ndarray) -> pa.LargeListArray:
    """A large_list array (one list per row) from CSR-style offsets and values, zero copy."""
    return pa.LargeListArray.from_arrays(pa.array(np.asarray(indptr, dtype=np.int64)), pa.array(values))


def list_parts(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) numpy views of a large_list column written by ``list_array``."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = arr.offsets.to_numpy(zero_copy_only=True)
    values = arr.values.to_numpy(zero_copy_only=True)
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(values)):
        raise IndexFormatError("a posting list column has inconsistent offsets")
    return offsets, values


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


def write_index_dir(path: str, tables: dict[str, pa.Table], extra_files: dict[str, str],
                    manifest: dict, overwrite: bool = False) -> None:
    """Atomically create index directory ``path`` from Arrow tables and already-written files.

    ``extra_files`` maps names inside the index to files to move in (e.g. a FAISS
    index). The manifest gets the size and SHA-256 of every file.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise IndexFormatError(f"{path} already exists; pass --overwrite to replace it")
    with atomic_output(path, overwrite=True, directory=True) as tmp:
        files = {}
        meta = {"format_version": FORMAT_VERSION,
                **{k: manifest[k] for k in ("backend", "model", "n_items", "n_dims") if k in manifest}}
        for name, table in tables.items():
            write_table(os.path.join(tmp, name), table, meta)
        for name, src in extra_files.items():
            shutil.move(src, os.path.join(tmp, name))
        for name in sorted(os.listdir(tmp)):
            full = os.path.join(tmp, name)
            _fsync(full)
            files[name] = {"bytes": os.path.getsize(full), "sha256": sha256_file(full)}
        manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created_by": f"sparseidx {__version__}",
                    **manifest, "files": files}
        _write_json_atomic(os.path.join(tmp, MANIFEST), manifest)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_manifest(path: str) -> dict:
    """Read and check an index's manifest; refuse unknown formats and newer versions."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise IndexFormatError(f"{path}: not an index directory (build one with 'sparseidx build')")
    mpath = os.path.join(path, MANIFEST)
    if not os.path.exists(mpath):
        raise IndexFormatError(f"{path}: no {MANIFEST}; not a sparseidx index or an interrupted write")
    try:
        with open(mpath) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{mpath}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{mpath}: not a sparseidx manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise IndexFormatError(f"{mpath}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version} was written by {manifest.get('created_by', 'a newer sparseidx')}; "
            f"this sparseidx {__version__} reads format versions up to {FORMAT_VERSION}: upgrade sparseidx")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise IndexFormatError(f"{mpath}: lists no files")
    return manifest


def check_files(path: str, manifest: dict, checksums: bool = True) -> list[str]:
    """Problems with the files an index lists: missing, wrong size, wrong checksum."""
    problems = []
    for name, info in manifest["files"].items():
        full = os.path.join(path, name)
        if not os.path.exists(full):
            problems.append(f"{name}: missing")
            continue
        size = os.path.getsize(full)
        if size != info.get("bytes"):
            problems.append(f"{name}: {size} bytes, manifest says {info.get('bytes')} (truncated or replaced)")
            continue
        if checksums and sha256_file(full) != info.get("sha256"):
            problems.append(f"{name}: SHA-256 does not match the manifest (file modified or corrupted)")
    return problems


def ensure_intact(path: str, manifest: dict, checksums: bool = True) -> None:
    """Raise IndexFormatError if any listed file is missing, truncated or modified."""
    problems = check_files(path, manifest, checksums)
    if problems:
        raise IndexFormatError(f"{path}: refusing a damaged index: " + "; ".join(problems)
                               + ". Rebuild it with 'sparseidx build'")


def map_table(path: str, name: str) -> pa.Table:
    """Memory-map one Arrow IPC file of an index (no copy, no decompression)."""
    full = os.path.join(path, name)
    try:
        source = pa.memory_map(full, "r")
        return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexFormatError(f"{full}: not a readable Arrow IPC file: {exc}") from None


def index_bytes(manifest: dict) -> int:
    """Total size of an index's files in bytes."""
    return int(sum(f["bytes"] for f in manifest["files"].values()))
