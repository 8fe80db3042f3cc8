"""Interactions in: text lines, CSV/TSV and Parquet files into a sparse user x item matrix.

Formats
- ``.txt`` (or any other extension): one user per line, ``user item item ...``,
  separated by whitespace (the format of the KGAT / LightGCN splits).
- ``.csv`` / ``.tsv``: a header row with ``user`` and ``item`` columns and an
  optional ``weight`` column (``user_id`` / ``item_id`` are accepted too).
- ``.parquet``: the same columns.

External ids may be integers or strings; they are mapped to internal indices
0..n-1 (ordered by id) and kept in ``user_ids`` / ``item_ids`` to map back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import DataError

USER_COLUMNS = ("user", "user_id", "userId")
ITEM_COLUMNS = ("item", "item_id", "itemId")
WEIGHT_COLUMNS = ("weight", "rating", "value")


@dataclass
class Interactions:
    """A user x item matrix with the external ids of its rows and columns."""

    X: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str = ""

    @property
    def n_users(self) -> int:
        return self.X.shape[0]

    @property
    def n_items(self) -> int:
        return self.X.shape[1]

    @property
    def nnz(self) -> int:
        return self.X.nnz

    def histories(self) -> list[np.ndarray]:
        """The items of each user as arrays of internal column indices."""
        X = self.X
        return [X.indices[X.indptr[u]: X.indptr[u + 1]] for u in range(X.shape[0])]


def load_interactions(path: str | os.PathLike, item_ids: np.ndarray | None = None,
                      user_ids: np.ndarray | None = None, skip_unknown: bool = False,
                      ) -> Interactions:
    """Read interactions from a lines, CSV/TSV or Parquet file.

    With ``item_ids`` (and/or ``user_ids``) given, columns (rows) follow that id
    space instead of the file's own, e.g. to map a test split onto a train split's
    items. Ids outside it raise a DataError naming the file, or are dropped with
    ``skip_unknown=True`` (the number dropped is in ``.dropped``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    listed = None  # users named in the file, including those with no items
    if ext in (".csv", ".tsv"):
        users, items, weights = _read_table_csv(path, "\t" if ext == ".tsv" else ",")
    elif ext in (".parquet", ".pq"):
        users, items, weights = _read_table_parquet(path)
    else:
        users, items, weights, listed = _read_lines(path)
    return _to_matrix(path, users, items, weights, item_ids, user_ids, skip_unknown, listed)


def _read_lines(path: str):
    """Vectorised parser of ``user item item ...`` lines; returns (users, items, weights)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.strip():
        raise DataError(f"{path}: the file is empty; expected lines of 'user item item ...'")
    raw = np.frombuffer(data, dtype=np.uint8)
    is_space = (raw == 32) | (raw == 9) | (raw == 10) | (raw == 13)
    starts = np.flatnonzero(~is_space & np.concatenate(([True], is_space[:-1])))
    line_of_token = np.cumsum(raw == 10)[starts]  # 0-based line number of every token
    tokens = np.array(data.split())
    first = np.concatenate(([True], line_of_token[1:] != line_of_token[:-1]))
    try:
        values = tokens.astype(np.int64)
    except ValueError:
        values = _string_tokens(path, tokens, line_of_token)
    users = values[first]
    user_of_token = np.cumsum(first) - 1
    is_item = ~first
    return users[user_of_token[is_item]], values[is_item], None, users


def _string_tokens(path: str, tokens: np.ndarray, line_of_token: np.ndarray) -> np.ndarray:
    """Decode tokens as strings when the file does not hold integer ids throughout.

    A file whose first token is an integer is an integer file: a later non-integer
    token is then a malformed line, reported with its line number.
    """
    try:
        int(tokens[0])
    except ValueError:
        try:
            return np.char.decode(tokens, "utf-8")
        except UnicodeDecodeError:
            bad = next(i for i, t in enumerate(tokens) if not _decodes(t))
            raise DataError(f"{path}:{line_of_token[bad] + 1}: id {tokens[bad]!r} is not valid UTF-8")
    for i, t in enumerate(tokens):
        try:
            int(t)
        except ValueError:
            raise DataError(
                f"{path}:{line_of_token[i] + 1}: malformed line: id {t.decode(errors='replace')!r} is not an "
                "integer, but the file's ids are integers; expected 'user item item ...' separated by spaces"
            ) from None
    raise AssertionError("unreachable: every token parsed as an integer")


def _decodes(token: bytes) -> bool:
    try:
        token.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _pick(path: str, names: list[str], wanted: tuple[str, ...], required: bool) -> str | None:
    for name in wanted:
        if name in names:
            return name
    if required:
        raise DataError(f"{path}: no column named {' or '.join(repr(w) for w in wanted)}; "
                        f"found columns {names}")
    return None


def _columns(path: str, table) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    ucol = _pick(path, names, USER_COLUMNS, True)
    icol = _pick(path, names, ITEM_COLUMNS, True)
    wcol = _pick(path, names, WEIGHT_COLUMNS, False)
    for col in (ucol, icol):
        nulls = table[col].null_count
        if nulls:
            row = int(pc.index(pc.is_null(table[col]), True).as_py())
            raise DataError(f"{path}: row {row + 1} (line {row + 2}): missing value in column {col!r}")
    users = table[ucol].to_numpy()
    items = table[icol].to_numpy()
    weights = None
    if wcol is not None:
        col = table[wcol]
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            bad = _first_non_numeric(col.to_pylist())
            raise DataError(f"{path}: row {bad + 1} (line {bad + 2}): weight {col[bad].as_py()!r} in column "
                            f"{wcol!r} is not a number")
        if col.null_count:
            row = int(pc.index(pc.is_null(col), True).as_py())
            raise DataError(f"{path}: row {row + 1} (line {row + 2}): missing value in column {wcol!r}")
        weights = col.to_numpy().astype(np.float32)
        if not np.all(np.isfinite(weights)):
            row = int(np.flatnonzero(~np.isfinite(weights))[0])
            raise DataError(f"{path}: row {row + 1} (line {row + 2}): weight is not finite")
    return users, items, weights


def _first_non_numeric(values: list) -> int:
    for i, v in enumerate(values):
        try:
            float(v)
        except (TypeError, ValueError):
            return i
    return 0


def _read_table_csv(path: str, delimiter: str):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None
    return _columns(path, table)


def _read_table_parquet(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    return _columns(path, table)


def _normalise_ids(ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind == "O":
        return ids.astype(str)
    return ids


def show_id(value) -> str:
    """An id as people write it (no numpy type names)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _to_matrix(path, users, items, weights, item_ids, user_ids, skip_unknown, listed=None) -> Interactions:
    users = _normalise_ids(np.asarray(users))
    items = _normalise_ids(np.asarray(items))
    keep = np.ones(len(items), dtype=bool)
    dropped = 0
    if item_ids is None:
        item_ids, item_idx = np.unique(items, return_inverse=True)
    else:
        item_idx, known = _lookup(item_ids, items)
        if not known.all():
            if not skip_unknown:
                raise DataError(f"{path}: item {show_id(items[~known][0])} is not in the item id space "
                                f"({int((~known).sum())} such interactions); pass skip_unknown to drop them")
            keep &= known
    if user_ids is None:
        user_ids = np.unique(users if listed is None else _normalise_ids(np.asarray(listed)))
        user_idx = np.searchsorted(user_ids, users)
    else:
        user_idx, known = _lookup(user_ids, users)
        if not known.all():
            if not skip_unknown:
                raise DataError(f"{path}: user {show_id(users[~known][0])} is not in the user id space")
            keep &= known
    dropped = int((~keep).sum())
    data = np.ones(int(keep.sum()), dtype=np.float32) if weights is None else weights[keep]
    X = sp.csr_matrix((data, (user_idx[keep], item_idx[keep])),
                      shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    X.sum_duplicates()
    if weights is None:
        X.data[:] = 1.0  # repeated (user, item) pairs are one interaction in binary data
    out = Interactions(X=X, user_ids=np.asarray(user_ids), item_ids=np.asarray(item_ids), source=path)
    out.dropped = dropped
    return out


class IdLookup:
    """Internal indices of external ids in one id space, sorted once and reused across lookups."""

    def __init__(self, space: np.ndarray):
        self.space = np.asarray(space)
        self._order = np.argsort(self.space, kind="stable")
        self._sorted = self.space[self._order]
        if self.space.dtype.kind in "USO":
            self._sorted = self._sorted.astype(str)

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``ids`` (already of the space's kind) and a mask of those found."""
        if self._sorted.dtype.kind != ids.dtype.kind:
            try:
                ids = ids.astype(self._sorted.dtype)
            except ValueError:
                return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        if not len(self._sorted):
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return self._order[pos].astype(np.int64), self._sorted[pos] == ids

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Like ``find``, for ids as users give them (strings are coerced to the space's type)."""
        ids = np.asarray(ids)
        if self.space.dtype.kind in "iu" and ids.dtype.kind in "USO":
            parsed = np.empty(len(ids), dtype=np.int64)
            ok = np.ones(len(ids), dtype=bool)
            for i, v in enumerate(ids.tolist()):
                try:
                    parsed[i] = int(v)
                except (TypeError, ValueError):
                    ok[i] = False
                    parsed[i] = 0
            idx, found = self.find(parsed)
            return idx, found & ok
        if self.space.dtype.kind in "USO":
            ids = ids.astype(str)
        return self.find(_normalise_ids(ids))


def _lookup(space: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in the id array ``space`` and a mask of those found."""
    return IdLookup(space).find(ids)


def lookup_ids(space: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Internal indices of external ``ids`` in ``space`` (strings are coerced to the space's type)."""
    return IdLookup(space).lookup(ids)


def as_matrix(X, item_ids=None) -> tuple[sp.csr_matrix, np.ndarray]:
    """(users x items float32 CSR, item ids) from Interactions or a matrix (ids default to 0..n-1)."""
    if isinstance(X, Interactions):
        return X.X, X.item_ids if item_ids is None else np.asarray(item_ids)
    X = sp.csr_matrix(X, dtype=np.float32)
    if item_ids is None:
        item_ids = np.arange(X.shape[1], dtype=np.int64)
    if len(item_ids) != X.shape[1]:
        raise DataError(f"{len(item_ids)} item ids for {X.shape[1]} item columns")
    return X, np.asarray(item_ids)


def popularity(X: sp.spmatrix) -> np.ndarray:
    """Number of users who interacted with each item."""
    X = sp.csr_matrix(X)
    return np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
