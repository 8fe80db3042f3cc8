"""Indexes with one search contract: ``search(histories, k, options, exclude=, allow=) -> (scores, ids)``."""

from __future__ import annotations

import os

from ..errors import DataError
from ..factors import DenseFactors, Factors
from . import format as fmt
from .base import SearchIndex, SearchResult
from .options import FaissSearchOptions, SearchOptions, SparseSearchOptions
from .sparse import SparseIndex

BACKENDS = ("sparse", "faiss")


class Index:
    """Entry point: build an index from factors, or open one from disk whatever its backend."""

    @staticmethod
    def build(factors: Factors | DenseFactors, backend: str | None = None, **options) -> SearchIndex:
        """An index over the factors: ``sparse`` (inverted lists; options of ``SparseIndex.build``) or
        ``faiss`` (options of ``DenseIndex.build``); by default sparse for sparse factors, FAISS for dense."""
        if backend is None:
            backend = "faiss" if isinstance(factors, DenseFactors) else "sparse"
        if backend not in BACKENDS:
            raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "faiss":
            from .dense import DenseIndex

            return DenseIndex.build(factors, **options)
        if isinstance(factors, DenseFactors):
            raise DataError(f"model {factors.model!r} gives dense embeddings: use the faiss backend "
                            "(--backend faiss)")
        return SparseIndex.build(factors, **options)

    @staticmethod
    def open(path: str | os.PathLike, verify: bool = True):
        """Open one whole build of an index directory (sparse or FAISS-backed) after checking it."""
        with fmt.open_files(path) as files:
            return _open(files, verify)

    @staticmethod
    def verify(path: str | os.PathLike) -> list[str]:
        """Problems found in an index directory (empty when it is intact).

        Checks the manifest, that every file the format needs is listed, is a regular
        file inside the directory, and matches its size and SHA-256, then that the
        files are well-formed Arrow/FAISS files of this build with in-range ids.
        """
        try:
            with fmt.open_files(path) as files:
                problems = files.problems(checksums=True)
                if not problems:
                    _open(files, verify=False)  # the checksums were just checked
        except fmt.IndexFormatError as exc:
            return [str(exc)]
        return problems


def _open(files: fmt.IndexFiles, verify: bool):
    if files.manifest["backend"] == "faiss":
        from .dense import DenseIndex

        return DenseIndex.open(files.path, verify=verify, files=files)
    return SparseIndex.open(files.path, verify=verify, files=files)


__all__ = ["Index", "SearchIndex", "SparseIndex", "SearchResult", "SearchOptions", "SparseSearchOptions",
           "FaissSearchOptions", "BACKENDS"]
