"""A dataset split into partitions: one file each, so that every partition is read by one worker.

A dataset is a directory of files in the formats ``load_interactions`` reads (Parquet,
CSV/TSV, ``user item item ...`` lines), searched recursively; names starting with ``.``
or ``_`` (``_SUCCESS``, ``.crc`` files, hidden folders) are skipped, as Spark and Dask
do. A single file is one partition. A user's rows must all lie in one file: that is how
datasets bucketed by user are written, and what makes each partition's answers and
Gram matrix complete on their own.
"""

from __future__ import annotations

import os

from ..errors import DataError


def list_partitions(location: str | os.PathLike) -> list[str]:
    """The files of the dataset at ``location`` (sorted, absolute), or a one-line DataError."""
    path = os.path.abspath(os.fspath(location))
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such file or directory")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        files += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))
                  and os.path.isfile(os.path.join(root, n))]
    if not files:
        raise DataError(f"{path}: the directory holds no data files (names starting with '.' or '_' are skipped)")
    return files
