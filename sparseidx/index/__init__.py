"""Indexes with one search contract: ``search(histories, k) -> (scores, ids)``."""

from __future__ import annotations

import os

from ..factors import Factors
from . import format as fmt
from .sparse import SearchResult, SparseIndex


class Index:
    """Entry point: build an index from factors, or open one from disk whatever its backend."""

    @staticmethod
    def build(factors: Factors, **options) -> SparseIndex:
        """A sparse inverted index over the factors (see ``SparseIndex.build`` for options)."""
        return SparseIndex.build(factors, **options)

    @staticmethod
    def open(path: str | os.PathLike, verify: bool = True):
        """Open an index directory (sparse or FAISS-backed) after checking its manifest and files."""
        manifest = fmt.read_manifest(os.fspath(path))
        backend = manifest.get("backend")
        if backend == "sparse":
            return SparseIndex.open(path, verify=verify, manifest=manifest)
        if backend == "faiss":
            from .dense import DenseIndex

            return DenseIndex.open(path, verify=verify, manifest=manifest)
        raise fmt.IndexFormatError(f"{path}: unknown index backend {backend!r}")

    @staticmethod
    def verify(path: str | os.PathLike) -> list[str]:
        """Problems found in an index directory (empty when it is intact)."""
        manifest = fmt.read_manifest(os.fspath(path))
        return fmt.check_files(os.fspath(path), manifest, checksums=True)


__all__ = ["Index", "SparseIndex", "SearchResult"]
