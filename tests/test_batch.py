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
    with pytest.raises(DataError, match=r"b.txt:151: ids change from integers to strings"):
        list(iter_interactions(str(tmp_path / "b.txt"), index.item_ids, chunk_bytes=20))
    (tmp_path / "c.txt").write_text("\n\n  \n")
    with pytest.raises(DataError, match="the file is empty"):
        list(iter_interactions(str(tmp_path / "c.txt"), index.item_ids, chunk_bytes=2))


def test_a_line_longer_than_a_block_is_read_whole(tmp_path, index):
    long = "7 " + " ".join(str(i) for i in index.item_ids)
    (tmp_path / "u.txt").write_text(f"1 {index.item_ids[0]}\n{long}\n")
    parts = [part for part, _ in iter_interactions(str(tmp_path / "u.txt"), index.item_ids, chunk_bytes=16)]
    assert sum(p.n_users for p in parts) == 2 and sum(p.nnz for p in parts) == 61
