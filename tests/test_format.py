"""Index format v1: exact round trip, memory mapping, checksums, versions, atomic writes."""

import json
import os

import numpy as np
import pyarrow as pa
import pytest
from helpers import random_factors, random_histories

from sparseidx import Index, SparseIndex
from sparseidx.errors import IndexFormatError, OutputError
from sparseidx.index import format as fmt


def test_round_trip_is_exact(tmp_path):
    f = random_factors(1, 200, 40, 0.1)
    f.params = {"l2": 3.0, "k": 7}
    index = Index.build(f)
    index.write(tmp_path / "idx")
    back = Index.open(tmp_path / "idx")
    g = back.to_factors()
    assert (g.encoder != f.encoder).nnz == 0 and (g.embeddings != f.embeddings).nnz == 0
    assert np.array_equal(g.priors, f.priors) and np.array_equal(g.item_ids, f.item_ids)
    assert np.array_equal(back.popularity, f.popularity)
    assert back.manifest["params"] == {"l2": 3.0, "k": 7}
    Q = random_histories(1, 20, 200, 5)
    a, b = index.search(Q, 10), back.search(Q, 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_string_item_ids_round_trip(tmp_path):
    f = random_factors(2, 30, 5, 0.3)
    f.item_ids = np.array([f"item-{i}" for i in range(30)])
    Index.build(f).write(tmp_path / "idx")
    back = Index.open(tmp_path / "idx")
    assert list(back.item_ids) == list(f.item_ids)
    assert back.search([["item-3", "item-4"]], 2)[1].shape == (1, 2)


def test_open_is_memory_mapped_without_copies(tmp_path):
    Index.build(random_factors(3, 100, 20, 0.2)).write(tmp_path / "idx")
    back = Index.open(tmp_path / "idx")
    for arr in (back.v_items, back.v_weights, back.v_indptr, back.e_dims, back.e_weights):
        assert not arr.flags.owndata and not arr.flags.writeable
    buf = back._tables[0]["items"].chunk(0).values.buffers()[1]
    assert not buf.is_mutable  # an mmap'd file buffer, not a heap copy


def test_files_are_uncompressed_arrow_ipc_with_large_lists(tmp_path):
    Index.build(random_factors(4, 50, 10, 0.2)).write(tmp_path / "idx")
    with pa.memory_map(str(tmp_path / "idx" / "postings.arrow")) as src:
        reader = pa.ipc.open_file(src)
        schema = reader.schema
        assert pa.types.is_large_list(schema.field("items").type)
        assert pa.types.is_large_list(schema.field("weights").type)
        assert json.loads(schema.metadata[b"sparseidx"])["format_version"] == 1
        assert reader.num_record_batches == 1


def test_manifest_lists_every_file_with_checksum(tmp_path):
    Index.build(random_factors(5, 50, 10, 0.2)).write(tmp_path / "idx")
    manifest = fmt.read_manifest(tmp_path / "idx")
    assert set(manifest["files"]) == {"postings.arrow", "encoder.arrow", "items.arrow", "forward.arrow"}
    for name, info in manifest["files"].items():
        assert info["sha256"] == fmt.sha256_file(tmp_path / "idx" / name)
    assert Index.verify(tmp_path / "idx") == []


def test_forward_rows_are_shared_with_the_encoder_when_equal(tmp_path):
    f = random_factors(6, 50, 10, 0.2)
    f.encoder = f.embeddings
    Index.build(f).write(tmp_path / "same")
    manifest = fmt.read_manifest(tmp_path / "same")
    assert manifest["forward_index"] == "encoder" and "forward.arrow" not in manifest["files"]
    # static pruning makes the indexed rows differ from the encoder: they are stored
    Index.build(f, postings_per_dim=2).write(tmp_path / "pruned")
    pruned = Index.open(tmp_path / "pruned")
    assert pruned.manifest["forward_index"] == "forward.arrow"
    f_indptr, f_dims, f_weights = pruned.forward
    V = pruned.to_factors().embeddings
    assert np.array_equal(f_indptr, V.indptr) and np.array_equal(f_dims, V.indices)
    assert np.array_equal(f_weights, V.data)


def test_tampered_file_is_refused(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(6, 50, 10, 0.2)).write(path)
    target = path / "postings.arrow"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="postings.arrow: SHA-256 does not match"):
        Index.open(path)
    assert "SHA-256" in Index.verify(path)[0]


def hashes_while(monkeypatch, action) -> int:
    """How many files ``action`` hashed (calls of hashlib.sha256 in the format module)."""
    calls = []
    real = fmt.hashlib.sha256

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fmt.hashlib, "sha256", counting)
    action()
    monkeypatch.setattr(fmt.hashlib, "sha256", real)
    return len(calls)


def test_verified_checksums_are_remembered_per_file_version_and_verify_always_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEIDX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "idx"
    Index.build(random_factors(6, 50, 10, 0.2)).write(path)
    n_files = len(json.loads((path / "manifest.json").read_text())["files"])
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == n_files
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == 0  # remembered
    assert hashes_while(monkeypatch, lambda: Index.verify(path)) == n_files  # a full check, always
    target = path / "postings.arrow"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the ctime still moved
    with pytest.raises(IndexFormatError, match="postings.arrow: SHA-256 does not match"):
        Index.open(path)
    monkeypatch.setenv("SPARSEIDX_REMEMBER_VERIFIED", "0")
    Index.build(random_factors(6, 50, 10, 0.2)).write(path, overwrite=True)
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == n_files
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == n_files


def test_value_checks_are_remembered_with_the_checksums_and_redone_for_another_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEIDX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "idx"
    Index.build(random_factors(6, 50, 10, 0.2)).write(path)
    checked = []
    real_ids, real_finite = fmt.check_ids, fmt.check_finite
    monkeypatch.setattr(fmt, "check_ids", lambda p, name, *a: (checked.append(name), real_ids(p, name, *a)))
    monkeypatch.setattr(fmt, "check_finite", lambda p, name, *a: (checked.append(name), real_finite(p, name, *a)))

    def checks(action) -> set[str]:
        checked.clear()
        action()
        return set(checked)

    every = {"postings.arrow", "encoder.arrow", "items.arrow", "forward.arrow"}
    assert checks(lambda: Index.open(path)) == every
    assert checks(lambda: Index.open(path)) == set()  # checksums and values remembered together
    assert checks(lambda: Index.verify(path)) == every  # a full check, always
    assert checks(lambda: Index.open(path, verify=False)) == every  # nothing hashed: nothing trusted
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["n_items"] -= 1  # another manifest: what was checked against the old one is not trusted
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="postings.arrow: ids outside 0..48|rows where 49 were expected"):
        Index.open(path)


def test_an_unwritable_cache_only_means_hashing_again(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SPARSEIDX_CACHE_DIR", str(tmp_path / "file" / "cache"))  # cannot be a directory
    path = tmp_path / "idx"
    Index.build(random_factors(6, 50, 10, 0.2)).write(path)
    n_files = len(json.loads((path / "manifest.json").read_text())["files"])
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == n_files
    assert hashes_while(monkeypatch, lambda: Index.open(path)) == n_files


def test_truncated_file_is_refused_even_without_checksums(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(7, 50, 10, 0.2)).write(path)
    target = path / "encoder.arrow"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(IndexFormatError, match=r"encoder.arrow: \d+ bytes, manifest says \d+ \(truncated"):
        Index.open(path, verify=False)


def test_missing_file_and_manifest(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(8, 50, 10, 0.2)).write(path)
    os.remove(path / "items.arrow")
    with pytest.raises(IndexFormatError, match="items.arrow: missing"):
        Index.open(path)
    os.remove(path / "manifest.json")
    with pytest.raises(IndexFormatError, match="no manifest.json"):
        Index.open(path)
    with pytest.raises(IndexFormatError, match="not an index directory"):
        Index.open(tmp_path / "nothing")


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(9, 50, 10, 0.2)).write(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 2
    manifest["created_by"] = "sparseidx 9.0"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 2 was written by sparseidx 9.0.*upgrade"):
        Index.open(path)


def test_corrupt_manifest_is_refused(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(10, 50, 10, 0.2)).write(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable manifest"):
        Index.open(path)
    (path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(IndexFormatError, match="not a sparseidx manifest"):
        Index.open(path)


def test_counts_that_disagree_with_the_manifest_are_refused(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(11, 50, 10, 0.2)).write(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["n_items"] = 51
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="disagree with the manifest"):
        Index.open(path)


def test_existing_destination_needs_overwrite_and_failed_writes_leave_nothing(tmp_path, monkeypatch):
    path = tmp_path / "idx"
    first = Index.build(random_factors(12, 50, 10, 0.2))
    first.write(path)
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        first.write(path)
    second = Index.build(random_factors(13, 60, 10, 0.2))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fmt, "sha256_file", boom)
    with pytest.raises(OSError, match="disk full"):
        second.write(path, overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["idx"], "a temporary directory was left behind"
    assert Index.open(path).n_items == 50, "the old index must survive a failed overwrite"
    second.write(path, overwrite=True)
    assert Index.open(path).n_items == 60
    assert sorted(os.listdir(tmp_path)) == ["idx"]


def test_static_pruning_keeps_highest_impact_postings(tmp_path):
    f = random_factors(14, 200, 10, 0.3)
    V = f.embeddings.tocsc()
    index = Index.build(f, postings_per_dim=5, min_weight=0.5)
    assert index.manifest["static_pruning"] == {"postings_per_dim": 5, "min_weight": 0.5}
    kept = index.to_factors().embeddings.tocsc()
    for d in range(10):
        col = V[:, d].toarray().ravel()
        cand = np.flatnonzero(np.abs(col) >= 0.5)
        want = cand[np.lexsort((cand, -np.abs(col[cand])))][:5]
        assert sorted(kept[:, d].nonzero()[0]) == sorted(want)
    index.write(tmp_path / "idx")
    assert Index.open(tmp_path / "idx").manifest["static_pruning"]["postings_per_dim"] == 5


def test_posting_lists_are_impact_ordered_with_max_abs():
    index = SparseIndex.build(random_factors(15, 300, 12, 0.2))
    for d in range(index.n_dims):
        w = np.abs(index.v_weights[index.v_indptr[d]: index.v_indptr[d + 1]])
        assert np.all(np.diff(w) <= 0)
        assert index.max_abs[d] == (w.max() if len(w) else 0)
