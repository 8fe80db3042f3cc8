"""An index's persistent deny list: items removed from every answer without a rebuild.

The list is ``deny.arrow`` inside the index directory, listed and checksummed in the
manifest like the other files. Setting it writes a new generation of the directory: the
build's files are linked (or copied) unchanged beside the new list and the whole
directory replaces the old one in one step, so readers see the old list or the new one.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa

from ..errors import DataError, IndexFormatError, UnknownItemError
from ..progress import log
from . import format as fmt
from .histories import sorted_unique


def load_denied(files: fmt.IndexFiles, n_items: int) -> np.ndarray | None:
    """The deny list of an opened build as a uint8 mask over its items (1: never returned), or None."""
    if fmt.DENY_FILE not in files.manifest["files"]:
        return None
    table = files.table(fmt.DENY_FILE)
    try:
        items = fmt.column(table, "item", np.int32, files.manifest["deny"]["items"], files.path)
    except KeyError as exc:
        raise IndexFormatError(f"{files.path}/{fmt.DENY_FILE}: no {exc} column") from None
    fmt.check_ids(files.path, fmt.DENY_FILE, items, n_items)
    mask = np.zeros(n_items, dtype=np.uint8)
    mask[items] = 1
    return mask


def set_denied(path: str | os.PathLike, ids, skip_unknown: bool = False) -> dict:
    """Replace the deny list of the index at ``path`` by the item ids ``ids`` (empty: no deny list).

    Unknown ids are refused (or dropped with a warning when ``skip_unknown``).
    Returns a summary: items denied, generation written.
    """
    from . import Index  # the index opens through its backend

    path = os.fspath(path)
    with fmt.open_files(path) as files:
        index = Index.open(path, verify=True)
        if _generation(index.manifest) != _generation(files.manifest):
            raise IndexFormatError(f"{path}: replaced while the deny list was being set; try again")
        items = _indices(index, np.asarray(ids), skip_unknown)
        manifest = {k: v for k, v in files.manifest.items()
                    if k not in ("format", "format_version", "created_by", "build_id", "generation", "files", "deny")}
        tables = {}
        if len(items):
            manifest["deny"] = {"items": int(len(items))}
            tables[fmt.DENY_FILE] = pa.table({"item": pa.array(items.astype(np.int32))})
        writers = {name: _linker(files, name) for name in fmt.required_files(files.manifest) if name != fmt.DENY_FILE}
        fmt.write_index_dir(path, tables, writers, manifest, overwrite=True, build_id=files.manifest["build_id"],
                            before_commit=lambda: _unchanged(path, files.manifest))
    new = fmt.read_manifest(path)
    return {"index": path, "denied_items": int(len(items)), "generation": new.get("generation"),
            "build_id": new.get("build_id")}


def _indices(index, ids: np.ndarray, skip_unknown: bool) -> np.ndarray:
    """Sorted unique internal indices of the ids; unknown ones refused or dropped."""
    ids = ids.ravel()
    idx, found = index.item_indices(ids)
    if not found.all():
        unknown = ids[~found]
        shown = ", ".join(map(str, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        if not skip_unknown:
            raise UnknownItemError(f"unknown item id(s) {shown} in the deny list; use --skip-unknown to ignore them")
        log.warning("Warning: skipped %d unknown item id(s) of the deny list: %s", len(unknown), shown)
    return sorted_unique(idx[found])


def _linker(files: fmt.IndexFiles, name: str):
    """A writer that puts the opened build's file ``name`` at a path: a hard link, or a copy where links fail."""
    def write(out: str) -> None:
        try:
            os.link(files.native_path(name), out, follow_symlinks=True)
        except OSError:
            with open(files.native_path(name), "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    return write


def _unchanged(path: str, manifest: dict) -> None:
    """Refuse to commit when another writer replaced the index since it was read."""
    if _generation(fmt.read_manifest(path)) != _generation(manifest):
        raise DataError(f"{path}: replaced by another write while the deny list was being set; try again")


def _generation(manifest: dict) -> tuple:
    return manifest.get("build_id"), manifest.get("generation")
