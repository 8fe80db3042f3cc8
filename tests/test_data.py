"""Reading interactions: formats, id mapping and malformed input."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparseidx.data import load_interactions, lookup_ids
from sparseidx.errors import DataError

from helpers import random_interactions, write_lines


def test_lines_roundtrip_integer_ids(tmp_path):
    X = random_interactions(30, 20, seed=1)
    path = tmp_path / "train.txt"
    write_lines(path, X, user_ids=np.arange(30) * 7 + 100, item_ids=np.arange(20) * 3 + 5)
    inter = load_interactions(path)
    assert inter.item_ids.dtype == np.int64
    assert list(inter.item_ids) == sorted(np.arange(20) * 3 + 5)
    assert list(inter.user_ids) == list(np.arange(30) * 7 + 100)
    assert (inter.X != X).nnz == 0


def test_lines_string_ids_and_empty_users(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("alice book-b book-a\nbob\ncarol book-a book-c book-a\n")
    inter = load_interactions(path)
    assert list(inter.item_ids) == ["book-a", "book-b", "book-c"]
    assert list(inter.user_ids) == ["alice", "bob", "carol"]
    dense = inter.X.toarray()
    assert dense.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 1]]  # repeated pairs count once


def test_malformed_line_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0 1 2\n1 3 4\n2 5 x7\n3 1\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: malformed line: id 'x7'"):
        load_interactions(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_interactions(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="no such file"):
        load_interactions(tmp_path / "nope.txt")


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_csv_tsv_with_weights(tmp_path, sep, ext):
    path = tmp_path / f"x.{ext}"
    path.write_text(sep.join(["user", "item", "weight"]) + "\n" + "\n".join(
        sep.join(r) for r in [["u1", "i2", "2.5"], ["u2", "i1", "1"], ["u1", "i1", "0.5"]]) + "\n")
    inter = load_interactions(path)
    assert list(inter.item_ids) == ["i1", "i2"]
    assert inter.X.toarray().tolist() == [[0.5, 2.5], [1.0, 0.0]]


def test_csv_errors_name_file_and_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user,item,weight\n1,2,3\n1,3,oops\n")
    with pytest.raises(DataError, match=r"x\.csv: row 2 \(line 3\): weight 'oops'"):
        load_interactions(path)
    path.write_text("user,product\n1,2\n")
    with pytest.raises(DataError, match="no column named 'item'"):
        load_interactions(path)
    path.write_text("user,item\n1,2\n1,2,3\n")
    with pytest.raises(DataError, match=r"x\.csv: malformed CSV"):
        load_interactions(path)


def test_parquet_and_missing_values(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1, 1, 2], "item_id": [10, 20, 10]}), path)
    inter = load_interactions(path)
    assert inter.X.toarray().tolist() == [[1, 1], [1, 0]]
    pq.write_table(pa.table({"user": [1, None], "item": [10, 20]}), path)
    with pytest.raises(DataError, match=r"row 2 \(line 3\): missing value in column 'user'"):
        load_interactions(path)


def test_mapping_onto_another_id_space(tmp_path):
    path = tmp_path / "test.txt"
    path.write_text("0 5 7\n1 9\n")
    space = np.array([7, 5, 3])
    with pytest.raises(DataError, match="item 9 is not in the item id space"):
        load_interactions(path, item_ids=space)
    inter = load_interactions(path, item_ids=space, skip_unknown=True)
    assert inter.dropped == 1
    assert inter.X.toarray().tolist() == [[1, 1, 0], [0, 0, 0]]


def test_lookup_ids_coerces_strings_to_integer_space():
    idx, found = lookup_ids(np.array([10, 30, 20]), ["20", "x", "10", "40"])
    assert found.tolist() == [True, False, True, False]
    assert idx[found].tolist() == [2, 0]
