"""Exceptions that carry a user-facing message: what is wrong, where, and how to fix it."""


class SparseIdxError(Exception):
    """Base class for every expected failure; the CLI prints it as one line and exits 1."""


class DataError(SparseIdxError):
    """Input data (interactions, histories, embeddings) is malformed or inconsistent."""


class UnknownItemError(DataError):
    """A query or evaluation refers to item ids the index does not contain."""


class IndexFormatError(SparseIdxError):
    """An index directory is missing, tampered with, truncated or of an unsupported version."""


class OutputError(SparseIdxError):
    """An output cannot be written where asked: it exists and is not sparseidx's, or the disk refuses it."""


class MemoryBudgetError(SparseIdxError):
    """A computation would need more memory than this machine has available."""


class MissingDependencyError(SparseIdxError):
    """An optional dependency is needed for the requested feature but is not installed."""


# the README's own commands that make an environment with an extra
MAKE_TARGETS = {"bench": "make bench-setup, then run .venv-bench/bin/sparseidx",
                "feast": "make feast-setup, which puts Feast in .venv-feast"}


def require(module: str, extra: str, feature: str):
    """Import an optional dependency, or raise a MissingDependencyError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        also = f", or {MAKE_TARGETS[extra]}" if extra in MAKE_TARGETS else ""
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module}' ({exc}); install it from sparseidx's clone "
            f"with: pip install -e '.[{extra}]'{also}"
        ) from None
