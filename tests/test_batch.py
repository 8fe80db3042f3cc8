"""Batch recommendations stream a lines file block by block: same answers as one search, bounded memory."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import random_factors, random_interactions, write_lines

from sparseidx import Index
from sparseidx.batch import recommend_file
from sparseidx.data import iter_interactions, load_interactions
from sparseidx.errors import DataError


@pytest.fixture(scope="module")
def index():
    return Index.build(random_factors(2, 60, 16, 0.3))


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_streamed_answers_equal_one_search_over_the_whole_file(tmp_path, index, chunk):
    X = random_interactions(300, 60, density=0.1, seed=3)
    write_lines(tmp_path / "users.txt", X, user_ids=np.arange(300) * 7, item_ids=index.item_ids)
    summary = recommend_file(index, str(tmp_path / "users.txt"), str(tmp_path / "out.parquet"), k=5,
                             chunk_bytes=chunk, prune=0.01)
    table = pq.read_table(tmp_path / "out.parquet")
    if chunk == 64:
        assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups > 10  # streamed in many blocks
    inter = load_interactions(str(tmp_path / "users.txt"), item_ids=index.item_ids)
    scores, ids = index.search(inter.X, 5, prune=0.01)
    want = {int(u): index.item_ids[row[row >= 0]].tolist() for u, row in zip(inter.user_ids, ids)}
    got = dict(zip(table["user_id"].to_pylist(), table["item_ids"].to_pylist()))
    assert got == want and summary["users"] == 300
    assert np.allclose(np.concatenate(table["scores"].to_pylist()), scores[ids >= 0], atol=1e-6)


def test_errors_in_later_blocks_name_their_line_and_leave_nothing(tmp_path, index):
    lines = [f"{u} {index.item_ids[u % 60]}" for u in range(200)]
    (tmp_path / "a.txt").write_text("\n".join(lines[:150] + ["x1 10"] + lines[150:]) + "\n")
    with pytest.raises(DataError, match=r"a.txt:151: .*'x1' is not an integer"):
        recommend_file(index, str(tmp_path / "a.txt"), str(tmp_path / "out.parquet"), chunk_bytes=64)
    assert not (tmp_path / "out.parquet").exists() and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    (tmp_path / "b.txt").write_text("\n".join(lines[:150] + ["u1 10", "u2 20"]) + "\n")
    # where the block ends decides which of the two messages names the line
    with pytest.raises(DataError, match=r"b.txt:151: (ids change from integers to strings|malformed line: id 'u1' "
                                        r"is not an integer)"):
        list(iter_interactions(str(tmp_path / "b.txt"), index.item_ids, chunk_bytes=20))
    (tmp_path / "c.txt").write_text("\n\n  \n")
    with pytest.raises(DataError, match="the file is empty"):
        list(iter_interactions(str(tmp_path / "c.txt"), index.item_ids, chunk_bytes=2))


def test_a_line_longer_than_a_block_is_read_whole(tmp_path, index):
    long = "7 " + " ".join(str(i) for i in index.item_ids)
    (tmp_path / "u.txt").write_text(f"1 {index.item_ids[0]}\n{long}\n")
    parts = [part for part, _ in iter_interactions(str(tmp_path / "u.txt"), index.item_ids, chunk_bytes=16)]
    assert sum(p.n_users for p in parts) == 2 and sum(p.nnz for p in parts) == 61


@pytest.mark.parametrize("ids", ["integers", "strings"])
def test_a_users_consecutive_lines_are_answered_once_from_all_of_them(tmp_path, index, ids):
    X = random_interactions(120, 60, density=0.15, seed=5)
    name = (lambda u: f"user-{u}") if ids == "strings" else (lambda u: str(u * 3))
    lines = []  # every user's items on several consecutive lines, one item each
    for u in range(X.shape[0]):
        lines += [f"{name(u)} {index.item_ids[i]}" for i in X.indices[X.indptr[u]: X.indptr[u + 1]]]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    summary = recommend_file(index, str(tmp_path / "pairs.txt"), str(tmp_path / "out.parquet"), k=5,
                             chunk_bytes=40)  # about 4 lines a block: most users' lines straddle a block's end
    table = pq.read_table(tmp_path / "out.parquet")
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups > 20
    has_items = np.diff(X.indptr) > 0
    assert summary["users"] == has_items.sum() == len(set(table["user_id"].to_pylist()))
    scores, ids_ = index.search(X[has_items], 5)  # each user's whole history at once
    want = {name(u): index.item_ids[row[row >= 0]].tolist() for u, row in zip(np.flatnonzero(has_items), ids_)}
    got = dict(zip(map(str, table["user_id"].to_pylist()), table["item_ids"].to_pylist()))
    assert got == want


@pytest.mark.parametrize("ids", ["integers", "strings"])
def test_a_user_whose_lines_are_apart_is_refused_and_nothing_is_written(tmp_path, index, ids):
    name = (lambda u: f"u{u}") if ids == "strings" else str
    lines = [f"{name(u)} {index.item_ids[u % 60]}" for u in range(100)] + [f"{name(17)} {index.item_ids[3]}",
                                                                             f"{name(500)} {index.item_ids[4]}"]
    (tmp_path / "apart.txt").write_text("\n".join(lines) + "\n")
    for chunk in (64, 1 << 20):  # the lines in two blocks (found by their keys), or in one (by their runs)
        with pytest.raises(DataError, match=rf"apart.txt: user '{name(17)}' is named on lines that are apart .*"
                                            r"\(sort the file by user\)$"):
            recommend_file(index, str(tmp_path / "apart.txt"), str(tmp_path / "out.parquet"), chunk_bytes=chunk)
        assert [p.name for p in tmp_path.iterdir()] == ["apart.txt"]


def test_user_keys_are_the_integer_ids_or_fnv1a_hashes():
    from sparseidx.user_keys import keys, named_twice, repeated

    assert keys(np.array([5, -1])).tolist() == [5, 2**64 - 1]
    assert keys(np.array(["a", ""])).tolist() == [0xAF63DC4C8601EC8C, 0xCBF29CE484222325]  # FNV-1a 64 vectors
    twice = repeated([keys(np.array(["a", "b"])), keys(np.array(["b", "c"]))])
    assert twice.tolist() == keys(np.array(["b"])).tolist()
    assert named_twice(np.array(["a", "b", "b", "c"]), twice) == ["b"]
    assert named_twice(np.array(["a", "b", "c"]), twice) == []  # a repeated key, distinct ids: not refused
