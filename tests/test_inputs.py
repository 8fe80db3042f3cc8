"""Malformed input refused with one clear DataError: ids in files, search histories, k, parameters, memory."""

import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from helpers import random_factors, random_interactions

import sparseidx
from sparseidx import Index
from sparseidx.data import load_interactions, lookup_ids
from sparseidx.errors import DataError, MemoryBudgetError
from sparseidx.models import _memory
from sparseidx.models.cholesky import fit_cholesky
from sparseidx.models.elsa import fit_compressed_elsa, fit_elsa
from sparseidx.models.lowrank import fit_cholesky_lowrank
from sparseidx.models.sansa import fit_sansa

INT64 = (-(2 ** 63), 2 ** 63 - 1)
SPELLINGS = ["0", "-0", "+5", "007", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
             "-9223372036854775809", "0000000000000000000000000012", "99999999999999999999", "", "-", "+",
             "+-5", "--5", "5-", "1_0", " 1", "1 ", "1.0", "1e3", "0x10", "\u0661", "\u00b2", "\u01311", "1\x002",
             "x"]


def reference_int(text: str):
    """Python's int of an optional sign and ASCII digits within int64, else None (the spec, one by one)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text, flags=re.ASCII):
        return None
    value = int(text)
    return value if INT64[0] <= value <= INT64[1] else None


def lines_file(tmp_path, text, name="s.txt"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def parquet_file(tmp_path, columns):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def csv_file(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text)
    return path


# ---- 2. ids parsed one by one, vectorised ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["U", "S", "O"])
def test_parse_int64_accepts_exactly_signed_ascii_digits_within_int64(kind):
    from sparseidx.data import parse_int64

    texts = SPELLINGS if kind != "S" else [t for t in SPELLINGS if t.isascii()]
    strings = np.array([t.encode() for t in texts] if kind == "S" else texts, dtype=None if kind != "O" else object)
    values, ok = parse_int64(strings)
    want = [reference_int(t) for t in texts]
    assert ok.tolist() == [w is not None for w in want]
    assert values.tolist() == [0 if w is None else w for w in want]


def test_one_non_integer_token_is_the_only_unknown_item(tmp_path):
    path = lines_file(tmp_path, "alice 1 2 x\nbob 2\n")
    space = np.array([3, 2, 1])
    with pytest.raises(DataError, match=r"s\.txt:1: item 'x' is not in the item id space \(1 interaction"):
        load_interactions(path, item_ids=space)
    inter = load_interactions(path, item_ids=space, skip_unknown=True)
    assert inter.dropped == 1
    assert list(inter.user_ids) == ["alice", "bob"]
    assert inter.X.toarray().tolist() == [[0, 1, 1], [0, 1, 0]]  # columns in the order of space: 3, 2, 1


def test_lookup_in_an_integer_space_never_truncates_or_casts():
    idx, found = lookup_ids(np.array([10, 20, 1]), ["10", "+20", "\u0661", "1e1", "99999999999999999999", "1.0"])
    assert found.tolist() == [True, True, False, False, False, False]
    assert idx[found].tolist() == [0, 1]
    _, found = lookup_ids(np.array([0, 1]), np.array([0.5, 1.0]))
    assert not found.any()


# ---- 3. search histories and k --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def index():
    f = random_factors(4, 20, 6, 0.4)
    f.item_ids = np.arange(20)
    return Index.build(f)


def test_search_refuses_float_item_ids(index):
    with pytest.raises(DataError, match=r"query 2: item id 0\.5 is a float64 value; item ids are integers"):
        index.search([[1, 2], [0.5, 1.7]], 3)
    assert index.search([[], [1, 2]], 3)[1].shape == (2, 3)  # an empty history is no float


def test_search_refuses_non_finite_weights(index):
    for bad in (np.nan, np.inf):
        Q = sp.csr_matrix(np.array([[1, 0] + [0] * 18, [0, bad] + [0] * 18], dtype=np.float64))
        with pytest.raises(DataError, match=r"query 2: history weight (nan|inf) is not finite"):
            index.search(Q, 3)
        with pytest.raises(DataError, match=r"query 2: history weight"):
            index.search(Q.toarray(), 3)


@pytest.mark.parametrize("histories", [None, 5, "abc", b"abc", {1: 1.0}, np.float64(2.0)])
def test_search_refuses_what_is_not_a_list_of_histories(index, histories):
    with pytest.raises(DataError, match="histories must be a sparse matrix or a list of item-id lists"):
        index.search(histories, 3)


def test_search_refuses_a_dict_as_one_history(index):
    with pytest.raises(DataError, match="query 2: a history is a list of item ids, not a dict"):
        index.search([[1], {2: 1.0, 3: 1.0}], 3)


def test_check_k_caps_at_the_catalogue_and_refuses_non_integers():
    from sparseidx.index.histories import check_k

    assert check_k(5, 3) == 3 and check_k(3, 5) == 3
    assert type(check_k(np.int64(2), 10)) is int and check_k(np.int32(2), 10) == 2
    for k in (0, -1, 2.5, "3", True, False, None, np.bool_(True), np.float64(3.0)):
        with pytest.raises(DataError, match="k must be a positive integer"):
            check_k(k, 10)
    with pytest.raises(DataError, match="the index has no items"):
        check_k(1, 0)


# ---- 4. ids in files ------------------------------------------------------------------------------------

def test_parquet_uint64_ids_beyond_int64_are_refused(tmp_path):
    path = parquet_file(tmp_path, {"user": pa.array([1, 2], pa.uint64()),
                                   "item": pa.array([5, 2 ** 64 - 1], pa.uint64())})
    with pytest.raises(DataError, match=r"row 2 \(line 3\): id 18446744073709551615 in column 'item' is beyond"):
        load_interactions(path)


@pytest.mark.parametrize("value,why", [(np.nan, "not a finite number"), (np.inf, "not a finite number"),
                                       (1.5, "not a whole number"), (1e19, "beyond the 64-bit integer range")])
def test_parquet_float_ids_must_be_whole_numbers(tmp_path, value, why):
    path = parquet_file(tmp_path, {"user": [1, 2, 3], "item": [3.0, 1.0, value]})
    with pytest.raises(DataError, match=rf"row 3 \(line 4\): id .* in column 'item' is {why}"):
        load_interactions(path)


def test_whole_float_ids_become_integers(tmp_path):
    inter = load_interactions(parquet_file(tmp_path, {"user": [1.0, 2.0], "item": [3.0, -1.0]}))
    assert inter.item_ids.dtype == np.int64 and inter.item_ids.tolist() == [-1, 3]
    assert inter.user_ids.dtype == np.int64


@pytest.mark.parametrize("text, message", [
    ("user,item\n1,2\n1,NaN\n", r"x\.csv: row 2 \(line 3\): id 'NaN' in column 'item' is not a finite"),
    ("user,item\na,\nb,x\n", r"x\.csv: row 1 \(line 2\): missing value in column 'item'"),
    ("user,item\n1,2\n1,99999999999999999999\n",
     r"row 2 \(line 3\): id '99999999999999999999' in column 'item' is beyond"),
    ("user,item,weight\n1,2,1\n1,3,NaN\n", r"row 2 \(line 3\): weight is not finite \(NaN\) in column 'weight'"),
    ("user,item,weight\n1,2,1\n1,3,-inf\n", r"row 2 \(line 3\): weight is not finite \(-inf\)"),
    ("user,item,weight\n1,2,\n1,3,oops\n", r"row 1 \(line 2\): missing value in column 'weight'"),
])
def test_csv_nan_empty_and_beyond_int64_values_are_refused_by_name(tmp_path, text, message):
    """NaN, empty and too-large ids, and NaN / infinite / empty weights: each named with its row and column."""
    with pytest.raises(DataError, match=message):
        load_interactions(csv_file(tmp_path, text))


def test_csv_integer_ids_keep_every_digit(tmp_path):
    inter = load_interactions(csv_file(tmp_path, "user,item\n1,12345678901234567\n2,1.0\n3,-9223372036854775808\n"))
    assert inter.item_ids.tolist() == [-(2 ** 63), 1, 12345678901234567]
    inter = load_interactions(csv_file(tmp_path, "user,item\n1,12\n2,nan-band\n"))
    assert inter.item_ids.tolist() == ["12", "nan-band"]  # one non-number: the column holds strings


def test_lines_file_ids_beyond_int64_name_the_line(tmp_path):
    path = lines_file(tmp_path, "0 1 2\n1 99999999999999999999\n", "big.txt")
    with pytest.raises(DataError, match=r"big\.txt:2: id '99999999999999999999' is beyond the 64-bit"):
        load_interactions(path)


def test_parquet_list_and_non_utf8_id_columns_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"column 'item' holds values of type list<.*>; ids must be integers or"):
        load_interactions(parquet_file(tmp_path, {"user": [1, 2], "item": [[1, 2], [3]]}))
    path = parquet_file(tmp_path, {"user": [1, 2], "item": pa.array([b"ok", b"\xff\xfe"], pa.binary())})
    with pytest.raises(DataError, match=r"row 2 \(line 3\): id '\ufffd\ufffd' in column 'item' is not valid UTF-8"):
        load_interactions(path)


def test_parquet_binary_and_dictionary_ids_read_as_strings(tmp_path):
    path = parquet_file(tmp_path, {"user": pa.array(["u", "v", "u"]).dictionary_encode(),
                                   "item": pa.array([b"b", "\u00e9".encode(), b"b"], pa.binary())})
    inter = load_interactions(path)
    assert inter.user_ids.tolist() == ["u", "v"] and inter.item_ids.tolist() == ["b", "\u00e9"]
    assert inter.X.toarray().tolist() == [[1, 0], [0, 1]]


# ---- 5. files without interactions ----------------------------------------------------------------------

def test_files_without_interactions_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"x\.csv: no interactions \(only a header\?\)"):
        load_interactions(csv_file(tmp_path, "user,item,weight\n"))
    with pytest.raises(DataError, match=r"x\.parquet: no interactions"):
        load_interactions(parquet_file(tmp_path, {"user": pa.array([], pa.int64()), "item": pa.array([], pa.int64())}))
    users_only = lines_file(tmp_path, "alice\nbob\n")
    with pytest.raises(DataError, match=r"s\.txt: no interactions"):
        load_interactions(users_only)
    inter = load_interactions(users_only, item_ids=np.array([1, 2, 3]))  # users to answer by popularity
    assert inter.X.shape == (2, 3) and inter.nnz == 0


# ---- 6. messages ----------------------------------------------------------------------------------------

def test_unknown_ids_say_how_to_skip_them(tmp_path):
    path = lines_file(tmp_path, "0 5 7\n1 9\n")
    with pytest.raises(DataError, match=r"s\.txt:2: item 9 .*; use --skip-unknown \(skip_unknown=True in Python\)"):
        load_interactions(path, item_ids=np.array([5, 7]))
    with pytest.raises(DataError, match=r"s\.txt:2: user 1 .*; use --skip-unknown \(skip_unknown=True in Python\)"):
        load_interactions(path, user_ids=np.array([0]))


@pytest.mark.parametrize("garbage,what", [(b"0 1 2\n1 " + bytes(range(128, 256)) * 4 + b"\n", "is not an integer"),
                                          (b"alice a b\nbob " + b"\xff" * 1000 + b"\n", "is not valid UTF-8")])
def test_binary_garbage_is_quoted_short_and_decoded(tmp_path, garbage, what):
    with pytest.raises(DataError) as err:
        load_interactions(lines_file(tmp_path, garbage, "bin.txt"))
    message = str(err.value)
    assert message.startswith("bin.txt:2: ") or "/bin.txt:2: " in message
    assert what in message and "bytes" not in message and "\ufffd" in message
    token = re.search(r"id '([^']*)'", message).group(1)
    assert len(token) <= 43 and token.endswith("...")


def test_vertical_tab_and_form_feed_separate_tokens_as_split_does(tmp_path):
    inter = load_interactions(lines_file(tmp_path, b"0 1\x0c2\n1\x0b3\n"))
    assert inter.X.toarray().tolist() == [[1, 1, 0], [0, 0, 1]]


# ---- 7. memory guard ------------------------------------------------------------------------------------

def test_available_bytes_honours_rlimit_as(monkeypatch):
    import resource

    headroom = 300 * 2 ** 20
    limit = _memory.virtual_size() + headroom
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, resource.RLIM_INFINITY)
                        if which == resource.RLIMIT_AS else (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert 0 < _memory.available_bytes() <= headroom + 16 * 2 ** 20  # the process may grow a little meanwhile


def test_cgroup_headroom_is_limit_minus_usage(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert _memory._cgroup_headroom(str(tmp_path)) == 600000
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("500000\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("450000\n")
    assert _memory._cgroup_headroom(str(tmp_path)) == 50000  # the tighter of v2 and v1
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").unlink()
    assert _memory._cgroup_headroom(str(tmp_path)) is None


def test_ulimit_v_refuses_the_dense_route_instead_of_crashing():
    code = """
import resource
import scipy.sparse as sp
from sparseidx.errors import MemoryBudgetError
from sparseidx.models.cholesky import fit_cholesky
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 512 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    fit_cholesky(sp.identity(16000, format="csr"), l2=1.0)
except MemoryBudgetError as exc:
    print("refused:", exc)
"""
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("refused: the dense Cholesky/EASE route needs 1.4 GiB (1.5 x a dense 16,000 x")
    assert "GiB of memory is available" in res.stdout and "use --route sparse" in res.stdout


def test_cholesky_budgets_one_and_a_half_buffers():
    X = random_interactions(60, 100, seed=1)
    need = int(1.5 * 4 * 100 ** 2)
    with pytest.raises(MemoryBudgetError, match=r"1\.5 x a dense 100 x 100 float32 matrix"):
        fit_cholesky(X, l2=5.0, memory_limit=int(need / 0.9) - 1000)
    fit_cholesky(X, l2=5.0, k=10, memory_limit=int(need / 0.9) + 1000)


# ---- 8. parameters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fit,param", [(fit_cholesky, "l2"), (fit_cholesky, "beta"), (fit_sansa, "l2"),
                                       (fit_sansa, "density"), (fit_elsa, "lr"), (fit_compressed_elsa, "lr"),
                                       (fit_cholesky_lowrank, "l2")])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_fitters_refuse_non_finite_parameters(fit, param, value):
    X = random_interactions(30, 12, seed=2)
    with pytest.raises(DataError, match=rf"^{param} must be a finite number (> 0|> 1 or 'auto'|in \(0, 1\] or None), "
                                        r"got -?(nan|inf)$"):
        fit(X, **{param: value})


def test_fitters_refuse_parameters_that_are_not_numbers():
    X = random_interactions(30, 12, seed=2)
    with pytest.raises(DataError, match="^l2 must be a finite number > 0, got '5'$"):
        fit_cholesky(X, l2="5")
    with pytest.raises(DataError, match="^beta must be a finite number > 1 or 'auto', got 'Auto'$"):
        fit_cholesky(X, beta="Auto")


def test_each_parameter_is_declared_once_and_everything_else_follows():
    """Defaults pass their own checks; the fit functions' signatures and the CLI's options come from them."""
    import inspect

    from sparseidx.models import MODELS
    from sparseidx_cli.build import build

    flags = {opt for p in build.params for opt in p.opts}
    types = {}
    for name, cls in MODELS.items():
        assert cls().get_params() == {p.name: p.default for p in cls.params}, name
        fit = getattr(sparseidx, "fit_" + {"chol": "cholesky", "sansa": "sansa", "puresvd": "puresvd",
                                           "chol-lowrank": "cholesky_lowrank", "elsa": "elsa",
                                           "celsa": "compressed_elsa"}[name])
        assert list(inspect.signature(fit).parameters)[2:] == [p.name for p in cls.params]
        for p in cls.params:
            assert types.setdefault(p.name, p.type) is p.type, f"{p.name} has one type on the command line"
            assert ("--" + p.name.replace("_", "-") in flags) == p.cli, p.name
