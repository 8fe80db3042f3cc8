"""Interactions in: text lines, CSV/TSV and Parquet files into a sparse user x item matrix.

Formats
- ``.txt`` (or any other extension): one user per line, ``user item item ...``,
  separated by whitespace (the format of the KGAT / LightGCN splits).
- ``.csv`` / ``.tsv``: a header row with ``user`` and ``item`` columns and an
  optional ``weight`` column (``user_id`` / ``item_id`` are accepted too).
- ``.parquet``: the same columns.

External ids may be integers (within int64) or strings; they are mapped to
internal indices 0..n-1 (ordered by id) and kept in ``user_ids`` / ``item_ids``
to map back. Float id columns are taken as integers when every value is whole.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from numbers import Real

import numpy as np
import scipy.sparse as sp

from .errors import DataError

USER_COLUMNS = ("user", "user_id", "userId")
ITEM_COLUMNS = ("item", "item_id", "itemId")
WEIGHT_COLUMNS = ("weight", "rating", "value")
SKIP_HINT = "use --skip-unknown (skip_unknown=True in Python) to drop them"
INT64_MAX = np.iinfo(np.int64).max
INT64_DIGITS = (b"9223372036854775807", b"9223372036854775808")  # |max| and |min| of int64
SHOWN_CHARS = 40  # at most this much of a bad token is quoted in a message
_INTEGER = re.compile(rb"[+-]?[0-9]+")
_WHITESPACE = (32, 9, 10, 13, 11, 12)  # the bytes bytes.split() splits on


@dataclass
class Interactions:
    """A user x item matrix with the external ids of its rows and columns."""

    X: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str = ""

    @property
    def n_users(self) -> int:
        """Users: rows of X."""
        return self.X.shape[0]

    @property
    def n_items(self) -> int:
        """Items: columns of X."""
        return self.X.shape[1]

    @property
    def nnz(self) -> int:
        """Interactions: non-zeros of X."""
        return self.X.nnz


def load_interactions(path: str | os.PathLike, item_ids: np.ndarray | None = None,
                      user_ids: np.ndarray | None = None, skip_unknown: bool = False, binarize: bool = False,
                      ) -> Interactions:
    """Read interactions from a lines, CSV/TSV or Parquet file.

    With ``item_ids`` (and/or ``user_ids``) given, columns (rows) follow that id
    space instead of the file's own, e.g. to map a test split onto a train split's
    items. Ids outside it raise a DataError naming the file, or are dropped with
    ``skip_unknown=True`` (the number dropped is in ``.dropped``). A file with no
    interactions is refused, except a lines file of users mapped onto ``item_ids``.
    A weight/rating/value column is used as given (repeated pairs summed) unless
    ``binarize``: then every (user, item) pair is 1, as the papers' implicit data.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    listed = lines = None  # lines files: users named, including those with no items; line of each item
    if ext in (".csv", ".tsv"):
        users, items, weights = _read_table_csv(path, "\t" if ext == ".tsv" else ",")
    elif ext in (".parquet", ".pq"):
        users, items, weights = _read_table_parquet(path)
    else:
        users, items, listed, lines = _read_lines(path)
        weights = None
        if not len(items) and item_ids is None:
            raise DataError(f"{path}: no interactions (no line names an item); "
                            "expected lines of 'user item item ...'")
    return _to_matrix(path, users, items, None if binarize else weights, item_ids, user_ids, skip_unknown, listed,
                      lines)


_DIGITS_AND_SIGNS = np.frombuffer(b"0123456789+-", dtype=np.uint8)


def read_id_list(path: str | os.PathLike, what: str = "item ids") -> np.ndarray:
    """The ids of a file holding one id a line (surrounding spaces and empty lines ignored), as strings."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8; save the file of {what} as UTF-8 text") from None
    ids = np.char.strip(np.array(text.splitlines() or [""], dtype=str))
    return ids[np.char.str_len(ids) > 0]


def parse_int64(strings) -> tuple[np.ndarray, np.ndarray]:
    """Integers spelled by an array of str or bytes: (int64 values, ok mask).

    Only an optional sign and ASCII digits within the int64 range are ok (no
    spaces, underscores, decimal points or other scripts' digits); values are 0
    where not ok.
    """
    strings = _as_bytes(np.asarray(strings).ravel())
    unsigned = np.char.lstrip(strings, b"+-")
    ok = (np.char.str_len(strings) - np.char.str_len(unsigned) <= 1) & np.char.isdigit(unsigned)
    digits = np.char.lstrip(unsigned, b"0")  # the significant digits
    size = np.char.str_len(digits)
    below = np.where(np.char.startswith(strings, b"-"), digits <= INT64_DIGITS[1], digits <= INT64_DIGITS[0])
    ok &= (size < 19) | ((size == 19) & below)  # digit strings of equal length compare as numbers
    values = np.zeros(len(strings), dtype=np.int64)
    values[ok] = (strings if ok.all() else strings[ok]).astype(np.int64)
    return values, ok


def _as_bytes(strings: np.ndarray) -> np.ndarray:
    """A str (or object) array as bytes, one byte per character; beyond Latin-1 becomes byte 255."""
    if strings.dtype.kind == "S":
        return strings
    if strings.dtype.kind != "U":
        strings = strings.astype(str)
    width = strings.dtype.itemsize // 4
    if not width:
        return strings.astype(np.bytes_)
    codes = np.ascontiguousarray(strings).view(np.uint32).reshape(len(strings), width)
    return np.minimum(codes, 255).astype(np.uint8).view(f"S{width}").ravel()


def _read_lines(path: str):
    """Vectorised parser of ``user item item ...`` lines: (users, items, listed users, line of each item)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.strip():
        raise DataError(f"{path}: the file is empty; expected lines of 'user item item ...'")
    return _parse_lines(path, data)


def iter_interactions(path: str | os.PathLike, item_ids: np.ndarray, skip_unknown: bool = False,
                      chunk_bytes: int = 4 << 20):
    """Interactions of a file mapped onto ``item_ids``, in parts: a lines file in blocks of whole lines of
    about ``chunk_bytes`` (memory stays bounded whatever the file's size), other formats whole.

    Each part is an ``Interactions`` of the users its block names. A block ends before the run of
    consecutive lines that names its last user, so a user's lines are read together; a user named
    on lines that are apart is refused within a block (``apart_error``), and a caller that must
    answer each user once checks across blocks. Yields (part, bytes of the file read so far).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.splitext(path)[1].lower() in (".csv", ".tsv", ".parquet", ".pq"):
        yield load_interactions(path, item_ids=item_ids, skip_unknown=skip_unknown), os.path.getsize(path)
        return
    carry, first_line, kind, read = b"", 0, None, 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_bytes)
            read += len(block)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if block and cut:
                cut = _start_of_last_user(data, cut)
            if block and cut == 0:  # one line, or one user's lines, longer than a block: read on
                carry = data
                continue
            text, carry = data[:cut], data[cut:]
            if text.strip():
                users, items, listed, lines = _parse_lines(path, text, first_line)
                _refuse_apart(path, listed)
                if kind is None:
                    kind = users.dtype.kind
                elif users.dtype.kind != kind:
                    raise DataError(f"{path}:{first_line + 1}: ids change from {_KINDS[kind]} to "
                                    f"{_KINDS[users.dtype.kind]} here; a file's ids are all integers or all strings")
                yield _to_matrix(path, users, items, None, item_ids, None, skip_unknown, listed, lines), read
            elif kind is None and not block:
                raise DataError(f"{path}: the file is empty; expected lines of 'user item item ...'")
            first_line += text.count(b"\n")
            if not block:
                return


_KINDS = {"i": "integers", "U": "strings"}


def apart_error(path: str, user) -> DataError:
    """The error for a user named on lines of ``path`` that are apart (not one run of consecutive lines)."""
    return DataError(f"{path}: user {show_token(user)} is named on lines that are apart and would be answered "
                     "once per place, each from part of its history; put each user's history on one line, or its "
                     "lines together (sort the file by user)")


def _refuse_apart(path: str, listed: np.ndarray) -> None:
    """Raise ``apart_error`` when a user of ``listed`` (the user of each line, in order) has two runs of lines."""
    runs = listed[np.r_[True, listed[1:] != listed[:-1]]]
    values, counts = np.unique(runs, return_counts=True)
    if (counts > 1).any():
        raise apart_error(path, values[counts > 1][0])


def _start_of_last_user(data: bytes, cut: int) -> int:
    """Where, in the whole lines ``data[:cut]``, the run of consecutive lines naming the last line's user
    starts (0 when that run is all of them)."""
    start = data.rfind(b"\n", 0, cut - 1) + 1
    user = data[start:cut].split(None, 1)[:1]
    while start > 0 and user:
        previous = data.rfind(b"\n", 0, start - 1) + 1
        if data[previous:start].split(None, 1)[:1] != user:
            break
        start = previous
    return start


def _parse_lines(path: str, data: bytes, first_line: int = 0):
    """``_read_lines`` of the text ``data``, whose first line is line ``first_line`` (0-based) of ``path``."""
    raw = np.frombuffer(data, dtype=np.uint8)
    is_space = np.isin(raw, _WHITESPACE)
    starts = np.flatnonzero(~is_space & np.concatenate(([True], is_space[:-1])))
    line_of_token = np.cumsum(raw == 10)[starts] + first_line  # 0-based line number of every token
    tokens = np.array(data.split())
    first = np.concatenate(([True], line_of_token[1:] != line_of_token[:-1]))
    values, ok = _integer_tokens(tokens, raw[~is_space])
    if not ok.all():
        values = _string_tokens(path, tokens, ok, line_of_token)
    users = values[first]
    user_of_token = np.cumsum(first) - 1
    is_item = ~first
    return users[user_of_token[is_item]], values[is_item], users, line_of_token[is_item] + 1


def _integer_tokens(tokens: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``parse_int64`` of the tokens, by numpy's own cast when the text holds only digits and signs."""
    if np.isin(text, _DIGITS_AND_SIGNS).all():
        try:
            return tokens.astype(np.int64), np.ones(len(tokens), dtype=bool)
        except (ValueError, OverflowError):
            pass  # a misplaced sign, or beyond int64: parse_int64 says which token
    return parse_int64(tokens)


def _string_tokens(path: str, tokens: np.ndarray, ok: np.ndarray, line_of_token: np.ndarray) -> np.ndarray:
    """Decode tokens as strings when the file does not hold int64 ids throughout.

    A file whose first token is an integer is an integer file: a later token that
    is not one, or is beyond int64, is then reported with its line number.
    """
    if _INTEGER.fullmatch(tokens[0]):
        bad = int(np.flatnonzero(~ok)[0])
        where, shown = f"{path}:{line_of_token[bad] + 1}", show_token(tokens[bad])
        if _INTEGER.fullmatch(tokens[bad]):
            raise DataError(f"{where}: id {shown} is beyond the 64-bit integer range (-2^63 .. 2^63-1); "
                            "write such ids as strings, e.g. with a letter prefix")
        raise DataError(f"{where}: malformed line: id {shown} is not an integer, but the file's ids are "
                        "integers; expected 'user item item ...' separated by spaces")
    try:
        return np.char.decode(tokens, "utf-8")
    except UnicodeDecodeError:
        bad = next(i for i, t in enumerate(tokens) if not _decodes(t))
        raise DataError(f"{path}:{line_of_token[bad] + 1}: id {show_token(tokens[bad])} is not valid UTF-8; "
                        "save the file as UTF-8 text") from None


def _decodes(token: bytes) -> bool:
    try:
        token.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def show_token(token) -> str:
    """A bad token quoted for a message: decoded with replacement characters, at most SHOWN_CHARS long."""
    text = token.decode("utf-8", errors="replace") if isinstance(token, bytes) else str(token)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def _place(path: str, i: int, lines: np.ndarray | None = None) -> str:
    """Where the i-th interaction of a file is: ``file:line`` for lines files, else its table row."""
    if lines is not None:
        return f"{path}:{int(lines[i])}"
    return f"{path}: row {i + 1} (line {i + 2})"


def _pick(path: str, names: list[str], wanted: tuple[str, ...], required: bool) -> str | None:
    for name in wanted:
        if name in names:
            return name
    if required:
        raise DataError(f"{path}: no column named {' or '.join(repr(w) for w in wanted)}; "
                        f"found columns {names}")
    return None


def _columns(path: str, table, from_text: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(users, items, weights or None) of a table; ``from_text``: CSV cells, whose ids are typed here."""
    names = table.column_names
    ucol = _pick(path, names, USER_COLUMNS, True)
    icol = _pick(path, names, ITEM_COLUMNS, True)
    wcol = _pick(path, names, WEIGHT_COLUMNS, False)
    for col in (ucol, icol, wcol):
        if col is not None:
            _no_nulls(path, table[col], col)
    users = _id_column(path, table[ucol], ucol, from_text)
    items = _id_column(path, table[icol], icol, from_text)
    weights = None if wcol is None else _weight_column(path, table[wcol], wcol)
    return users, items, weights


def _no_nulls(path: str, col, name: str) -> None:
    import pyarrow.compute as pc

    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise DataError(f"{_place(path, row)}: missing value in column {name!r}; fill it in or drop the row")


def _weight_column(path: str, col, name: str) -> np.ndarray:
    """The weights as float32; refuses non-numbers, NaN, infinities and values beyond float32."""
    import pyarrow as pa

    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        bad = _first_non_numeric(col.to_pylist())
        raise DataError(f"{_place(path, bad)}: weight {col[bad].as_py()!r} in column {name!r} is not a number")
    values = col.to_numpy().astype(np.float64)
    weights = values.astype(np.float32)
    bad = ~np.isfinite(weights)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values[row]
        what = (f"is not finite ({_show_float(value)})" if not np.isfinite(value)
                else f"{value:g} is beyond the float32 range")
        raise DataError(f"{_place(path, row)}: weight {what} in column {name!r}; weights must be finite numbers")
    return weights


def _show_float(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _first_non_numeric(values: list) -> int:
    for i, v in enumerate(values):
        try:
            float(v)
        except (TypeError, ValueError):
            return i
    return 0


def _id_column(path: str, col, name: str, from_text: bool) -> np.ndarray:
    """One id column as int64 or str; refuses NaN, fractions, beyond-int64, empty, nested and non-UTF-8 ids."""
    import pyarrow as pa

    kind = col.type
    if pa.types.is_dictionary(kind):
        col, kind = col.cast(kind.value_type), kind.value_type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        col, kind = _utf8(path, col, name), pa.string()
    if pa.types.is_integer(kind):
        return _int_ids(path, col.to_numpy(), name)
    if pa.types.is_floating(kind):
        return _float_ids(path, col.to_numpy().astype(np.float64), name)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = col.to_numpy().astype(str)
        return _text_ids(path, texts, name) if from_text else _nonempty_ids(path, texts, name)
    raise DataError(f"{path}: column {name!r} holds values of type {kind}; "
                    "ids must be integers or strings, one per row")


def _utf8(path: str, col, name: str):
    """A binary id column as strings, or a DataError naming the first row that is not UTF-8."""
    import pyarrow as pa

    try:
        return col.cast(pa.string())
    except pa.ArrowInvalid:
        values = col.to_pylist()
        row = next(i for i, v in enumerate(values) if not _decodes(v))
        raise DataError(f"{_place(path, row)}: id {show_token(values[row])} in column {name!r} is not valid "
                        "UTF-8; store ids as integers or UTF-8 strings") from None


def _int_ids(path: str, values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == np.uint64 and (values > INT64_MAX).any():
        row = int(np.flatnonzero(values > INT64_MAX)[0])
        raise DataError(f"{_place(path, row)}: id {values[row]} in column {name!r} is beyond the 64-bit signed "
                        "integer range (2^63-1); store such ids as strings")
    return values.astype(np.int64)


def _float_ids(path: str, values: np.ndarray, name: str, texts: np.ndarray | None = None) -> np.ndarray:
    """Float ids as int64 when every one is a whole number within int64; ``texts``: the cells as written."""
    finite = np.isfinite(values)
    whole = finite & (values == np.floor(np.where(finite, values, 0.0)))
    fits = whole & (values >= -(2.0 ** 63)) & (values < 2.0 ** 63)
    if not fits.all():
        row = int(np.flatnonzero(~fits)[0])
        why = ("not a finite number" if not finite[row] else "not a whole number" if not whole[row]
               else "beyond the 64-bit integer range")
        shown = show_token(texts[row]) if texts is not None else repr(float(values[row]))
        raise DataError(f"{_place(path, row)}: id {shown} in column {name!r} is {why}; "
                        "ids must be integers or strings")
    return values.astype(np.int64)


def _text_ids(path: str, texts: np.ndarray, name: str) -> np.ndarray:
    """Ids of a CSV column: int64 when every cell is an integer or a whole number, else the strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ints, ok = parse_int64(texts)
    if ok.all():
        return ints
    try:
        floats = pc.cast(pa.array(texts), pa.float64()).to_numpy()
    except pa.ArrowInvalid:  # some cell is not a number: the column holds string ids
        return _nonempty_ids(path, texts, name)
    return np.where(ok, ints, _float_ids(path, np.where(ok, 0.0, floats), name, texts))


def _nonempty_ids(path: str, texts: np.ndarray, name: str) -> np.ndarray:
    empty = texts == ""
    if empty.any():
        raise DataError(f"{_place(path, int(np.flatnonzero(empty)[0]))}: empty id in column {name!r}; "
                        "fill it in or drop the row")
    return texts


def _read_table_csv(path: str, delimiter: str):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # ids are read as text and typed by _text_ids; only empty cells are missing, so 'NaN' is a value
    convert = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                  column_types={c: pa.string() for c in USER_COLUMNS + ITEM_COLUMNS})
    try:
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                              convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None
    if not table.num_rows:
        raise DataError(f"{path}: no interactions (only a header?); add rows of user, item[, weight]")
    return _columns(path, table, from_text=True)


def _read_table_parquet(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    if not table.num_rows:
        raise DataError(f"{path}: no interactions (the table has no rows)")
    return _columns(path, table, from_text=False)


def show_id(value) -> str:
    """An id as people write it (no numpy type names)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _to_matrix(path, users, items, weights, item_ids, user_ids, skip_unknown, listed=None,
               lines=None) -> Interactions:
    """The matrix of the readers' ids (int64 or str arrays), mapped onto given id spaces if any."""
    keep = np.ones(len(items), dtype=bool)
    if item_ids is None:
        item_ids, item_idx = np.unique(items, return_inverse=True)
    else:
        item_idx, known = lookup_ids(item_ids, items)
        keep &= _known(path, "item", items, known, skip_unknown, lines)
    if user_ids is None:
        user_ids = np.unique(users if listed is None else listed)
        user_idx = np.searchsorted(user_ids, users)
    else:
        user_idx, known = lookup_ids(user_ids, users)
        keep &= _known(path, "user", users, known, skip_unknown, lines)
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


def _known(path, what: str, ids: np.ndarray, known: np.ndarray, skip_unknown: bool, lines) -> np.ndarray:
    """``known`` (the interactions to keep), or a DataError naming the first unknown id."""
    if not (known.all() or skip_unknown):
        row = int(np.flatnonzero(~known)[0])
        raise DataError(f"{_place(path, row, lines)}: {what} {show_id(ids[row])} is not in the {what} id space "
                        f"({int((~known).sum())} interaction(s) with unknown {what}s); {SKIP_HINT}")
    return known


class IdLookup:
    """Internal indices of external ids in one id space, sorted once and reused across lookups.

    Integer ids spanning a range of at most a few times their number (0..n-1, say)
    are found through a direct table, one read per id; others by binary search.
    """

    def __init__(self, space: np.ndarray):
        self.space = np.asarray(space)
        self._order = np.argsort(self.space, kind="stable")
        self._sorted = self.space[self._order]
        if self.space.dtype.kind in "USO":
            self._sorted = self._sorted.astype(str)
        self._table = None
        if self._sorted.dtype.kind in "iu" and len(self._sorted):
            low, high = int(self._sorted[0]), int(self._sorted[-1])
            if high - low < 4 * len(self._sorted) + 1024 and -(1 << 62) < low and high < 1 << 62:
                self._low = low
                self._table = np.full(high - low + 1, -1, dtype=np.int64)
                self._table[self._sorted.astype(np.int64) - low] = self._order

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``ids`` (already of the space's kind) and a mask of those found."""
        if not len(self._sorted):
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        if self._table is not None:
            offset = ids.astype(np.int64, copy=False) - self._low
            inside = (offset >= 0) & (offset < len(self._table))
            pos = self._table[np.where(inside, offset, 0)]
            found = inside & (pos >= 0)
            return np.where(found, pos, 0), found
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return self._order[pos].astype(np.int64), self._sorted[pos] == ids

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Like ``find``, for ids as users give them: each one is coerced to the space's type on its own.

        In an integer space only ids spelled as integers can be found (a float or
        a string like 'x' is unknown, never truncated or cast).
        """
        ids = np.asarray(ids).ravel()
        if self._sorted.dtype.kind in "iu" and ids.dtype.kind not in "iu":
            values, ok = parse_int64(ids)
            idx, found = self.find(values)
            return idx, found & ok
        if self._sorted.dtype.kind == "U":
            ids = ids.astype(str)
        return self.find(ids)


def lookup_ids(space: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Internal indices of external ``ids`` in ``space`` (strings are coerced to the space's type)."""
    return IdLookup(space).lookup(ids)


def check_finite(**params) -> None:
    """Refuse numeric parameters (by name) that are not finite real numbers; None means not given."""
    for name, value in params.items():
        if value is not None and not (isinstance(value, Real) and math.isfinite(value)):
            raise DataError(f"{name} must be a finite number, got {show_id(value)}")


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
