"""The index directory as untrusted input, and writes that never lose or mix data (hardening)."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import random_factors, random_histories, random_interactions, write_lines

from sparseidx import Index
from sparseidx.errors import IndexFormatError, OutputError
from sparseidx.index import format as fmt
from sparseidx_cli.main import cli

SOAK_SECONDS = float(os.environ.get("SPARSEIDX_SOAK_SECONDS", "30"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(res, *fragments):
    """The CLI failed with exit 1 and a single 'Error: ...' line naming every fragment (no traceback)."""
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in res.output, res.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def verify_fails(res, *fragments):
    """``sparseidx verify`` listed the problems, one a line, and ended with one 'Error: ...' line."""
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.strip().splitlines()[-1].startswith("Error: ") and "is damaged" in res.output
    for fragment in fragments:
        assert fragment in res.output, res.output


@pytest.fixture
def built(tmp_path):
    path = tmp_path / "idx"
    Index.build(random_factors(1, 60, 12, 0.2)).write(path)
    return path


def edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# ---- 1. --overwrite replaces only what sparseidx wrote ------------------------------------------

def test_overwrite_refuses_a_directory_sparseidx_did_not_write(tmp_path):
    write_lines(tmp_path / "data.txt", random_interactions(30, 20))
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.txt").write_text("x")
    res = run("build", tmp_path / "data.txt", "--out", d, "--overwrite", "--l2", 5, "--k", 5)
    one_error_line(res, "refusing to overwrite", "not a sparseidx index")
    assert os.listdir(d) == ["thesis.txt"] and (d / "thesis.txt").read_text() == "x"


def test_overwrite_of_the_working_directory_is_refused(tmp_path, monkeypatch):
    write_lines(tmp_path / "data.txt", random_interactions(30, 20))
    monkeypatch.chdir(tmp_path)
    res = run("build", "data.txt", "--out", ".", "--overwrite", "--l2", 5, "--k", 5)
    one_error_line(res, "refusing to overwrite")
    assert os.listdir(tmp_path) == ["data.txt"]


def test_overwrite_refuses_an_index_holding_a_users_file_and_replaces_a_clean_one(built):
    (built / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="it holds notes.txt, which sparseidx did not write"):
        Index.build(random_factors(2, 30, 12, 0.2)).write(built, overwrite=True)
    assert Index.open(built).n_items == 60
    os.remove(built / "notes.txt")
    Index.build(random_factors(2, 30, 12, 0.2)).write(built, overwrite=True)
    assert Index.open(built).n_items == 30


def test_an_empty_directory_may_receive_an_index(tmp_path):
    (tmp_path / "empty").mkdir()
    Index.build(random_factors(2, 30, 12, 0.2)).write(tmp_path / "empty")
    assert Index.open(tmp_path / "empty").n_items == 30


# ---- 3, 4. replacement is one step; leftovers of crashes are removed ----------------------------

CRASH_AFTER_EXCHANGE = """
import os, sys
sys.path.insert(0, {tests!r})
from helpers import random_factors
from sparseidx import Index
from sparseidx import files
def crash(path):
    os._exit(9)  # killed between the exchange and the removal of the old build
files._remove = crash
Index.build(random_factors(3, 45, 12, 0.2)).write({path!r}, overwrite=True)
"""

CRASH_WHILE_WRITING = """
import os, sys
sys.path.insert(0, {tests!r})
from helpers import random_factors
from sparseidx import Index
from sparseidx.index import format as fmt
def crash(*args):
    os._exit(9)  # killed after writing some files of the new build
fmt.sha256_file = crash
Index.build(random_factors(4, 50, 12, 0.2)).write({path!r}, overwrite=True)
"""


def crash(script, path):
    tests = os.path.dirname(os.path.abspath(__file__))
    code = script.format(tests=tests, path=str(path))
    assert subprocess.run([sys.executable, "-c", code], cwd=tests).returncode == 9


def test_a_crash_at_any_step_leaves_the_old_or_the_new_index_and_its_leftovers_are_removed(built):
    crash(CRASH_WHILE_WRITING, built)
    assert Index.open(built).n_items == 60, "a crash while writing must leave the old index"
    crash(CRASH_AFTER_EXCHANGE, built)
    assert Index.open(built).n_items == 45, "a crash after the exchange must leave the new index"
    leftovers = sorted(p for p in os.listdir(built.parent) if p.startswith(".idx.tmp-"))
    assert len(leftovers) == 2  # the half-written build and the replaced one
    Index.build(random_factors(5, 40, 12, 0.2)).write(built, overwrite=True)
    assert os.listdir(built.parent) == ["idx"] and Index.open(built).n_items == 40


# ---- 2. readers see one whole build while a writer replaces it ---------------------------------

def test_readers_never_see_a_mixed_build_nor_fail_while_a_writer_replaces_the_index():
    """benchmarks/replace_soak.py: one writer replaces the index in a loop, three readers open and query it."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "replace_soak.py")
    run_ = subprocess.run([sys.executable, script, "--seconds", str(SOAK_SECONDS)], capture_output=True, text=True,
                          timeout=SOAK_SECONDS + 300)
    assert run_.returncode == 0, run_.stderr
    report = json.loads(run_.stdout)
    assert report["replacements"] >= 2 * SOAK_SECONDS and report["answers"] >= 6 * SOAK_SECONDS, report
    assert report["mixed"] == 0 and report["failed_opens"] == 0, report["readers"]


# ---- 6, 7. the manifest and the files are untrusted ---------------------------------------------

@pytest.mark.parametrize("name", ["../../outside", "/etc/passwd", "/dev/zero", "postings.arrow/../x", "sub/x"])
def test_file_names_outside_the_format_are_refused_before_any_file_is_opened(built, name):
    def rename(m):
        m["files"][name] = m["files"].pop("postings.arrow")
    edit_manifest(built, rename)
    with pytest.raises(IndexFormatError, match="file list does not match a sparse index"):
        Index.open(built)
    assert "file list does not match a sparse index" in Index.verify(built)[0]
    verify_fails(run("verify", built), "unlisted: postings.arrow")
    one_error_line(run("query", built, "--history", 10), "file list does not match")
    one_error_line(run("export", built, "--to", "qdrant", "--out", built.parent / "p.jsonl"), "does not match")


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_index_files_must_be_regular_files_inside_the_directory(built, tmp_path, kind):
    target = built / "postings.arrow"
    outside = tmp_path / "outside.arrow"
    shutil.copy(target, outside)
    os.remove(target)
    if kind == "symlink":
        os.symlink(outside, target)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.mkdir(target)
    start = time.time()
    with pytest.raises(IndexFormatError, match="postings.arrow (is a symbolic link|is not a regular file)"):
        Index.open(built)
    verify_fails(run("verify", built), "postings.arrow")
    assert time.time() - start < 10, "a FIFO must not block the reader"


def test_an_oversized_or_non_json_manifest_is_refused(built):
    (built / "manifest.json").write_text(" " * (fmt.MAX_MANIFEST_BYTES + 1) + "{}")
    with pytest.raises(IndexFormatError, match="larger than any manifest"):
        Index.open(built)
    (built / "manifest.json").write_text('{"format": "sparseidx", "n_items": NaN}')
    with pytest.raises(IndexFormatError, match="unreadable manifest: NaN is not a JSON number"):
        Index.open(built)


def test_a_file_left_out_of_the_manifest_is_not_loaded_unchecked(built):
    import pyarrow as pa

    edit_manifest(built, lambda m: m["files"].pop("items.arrow"))
    table = pa.ipc.open_file(pa.memory_map(str(built / "items.arrow"))).read_all()
    priors = table["prior"].to_numpy().copy()
    priors[3] = 1e6
    table = table.set_column(table.column_names.index("prior"), "prior", pa.array(priors))
    fmt.write_table(str(built / "items.arrow"), table, json.loads(table.schema.metadata[b"sparseidx"]))
    with pytest.raises(IndexFormatError, match="unlisted: items.arrow"):
        Index.open(built)
    assert Index.verify(built) != []
    verify_fails(run("verify", built), "unlisted: items.arrow")
    one_error_line(run("query", built, "--history", 10), "unlisted: items.arrow")


def test_the_forward_index_flag_cannot_swap_in_other_rows(tmp_path):
    path = tmp_path / "pruned"
    Index.build(random_factors(6, 60, 12, 0.3), postings_per_dim=3).write(path)
    edit_manifest(path, lambda m: m.update(forward_index="encoder"))
    with pytest.raises(IndexFormatError, match="not part of the format: forward.arrow"):
        Index.open(path)
    edit_manifest(path, lambda m: m.update(forward_index="../../etc/passwd"))
    with pytest.raises(IndexFormatError, match="forward_index must be"):
        Index.open(path)


def test_files_of_another_build_are_refused_even_without_checksums(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Index.build(random_factors(7, 60, 12, 0.2)).write(a)
    Index.build(random_factors(8, 60, 12, 0.2)).write(b)
    shutil.copy(b / "postings.arrow", a / "postings.arrow")
    sizes = json.loads((b / "manifest.json").read_text())["files"]["postings.arrow"]
    edit_manifest(a, lambda m: m["files"].update({"postings.arrow": sizes}))
    with pytest.raises(IndexFormatError, match="belongs to another build"):
        Index.open(a, verify=False)


def test_out_of_range_ids_in_a_consistent_index_are_refused_before_the_engine_reads_them(tmp_path):
    f = random_factors(9, 60, 12, 0.2)
    index = Index.build(f)
    index.v_items = index.v_items.copy()
    index.v_items[0] = 10_000  # a crafted posting: the kernels would write outside their buffers
    index.write(tmp_path / "idx")  # a consistent manifest: sizes and checksums match the crafted files
    with pytest.raises(IndexFormatError, match=r"postings.arrow: ids outside 0..59"):
        Index.open(tmp_path / "idx")
    assert "ids outside" in Index.verify(tmp_path / "idx")[0]


@pytest.mark.parametrize("files", [[], "postings.arrow", {"postings.arrow": "big"},
                                   {"postings.arrow": {"bytes": True, "sha256": "0" * 64}},
                                   {"postings.arrow": {"bytes": 1, "sha256": "xyz"}}])
def test_malformed_file_entries_are_one_line_errors(built, files):
    def change(m):
        if isinstance(files, dict):
            m["files"].update(files)
        else:
            m["files"] = files
    edit_manifest(built, change)
    with pytest.raises(IndexFormatError):
        Index.open(built)
    verify_fails(run("verify", built))
    one_error_line(run("info", built))


# ---- 13. k is capped at the catalogue ------------------------------------------------------------

def test_k_is_capped_at_the_catalogue_without_allocating_for_the_asked_k(built, tmp_path):
    import resource

    index = Index.open(built)
    Q = random_histories(5, 4, 60, 5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for options in ({}, {"prune": 0.01}, {"budget": 50}):
        scores, ids = index.search(Q, 10_000_000, **options)
        want_scores, want_ids = index.search(Q, 60, **options)
        assert ids.shape == (4, 60) and np.array_equal(ids, want_ids) and np.array_equal(scores, want_scores)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: far below 10^7 x 12 B
    dense = tmp_path / "dense"
    from sparseidx.factors import DenseFactors
    rng = np.random.default_rng(0)
    from sparseidx.index.dense import DenseIndex
    DenseIndex.build(DenseFactors(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), np.ones(30),
                                  np.arange(30))).write(dense)
    assert Index.open(dense).search(Q[:, :30], 10_000_000)[1].shape == (4, 30)
    res = run("query", built, "--history", 10, "-k", 10_000_000, "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)["items"]) == 59


# ---- 5. batch query output ------------------------------------------------------------------

def test_batch_query_out_follows_the_overwrite_rule_and_the_umask(tmp_path):
    write_lines(tmp_path / "train.txt", random_interactions(40, 25, seed=3))
    assert run("build", tmp_path / "train.txt", "--out", tmp_path / "idx", "--l2", 5, "--k", 5).exit_code == 0
    users = tmp_path / "train.txt"
    one_error_line(run("query", tmp_path / "idx", "--users", users, "--out", users, "--overwrite"),
                   "refusing to overwrite")
    assert users.read_text().startswith("0 ")
    old = os.umask(0o022)
    try:
        res = run("query", tmp_path / "idx", "--users", users, "--out", tmp_path / "recs.parquet")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "recs.parquet").stat().st_mode & 0o777 == 0o644
    one_error_line(run("query", tmp_path / "idx", "--users", users, "--out", tmp_path / "recs.parquet"),
                   "already exists; pass --overwrite")
    res = run("query", tmp_path / "idx", "--users", users, "--out", tmp_path / "recs.parquet", "--overwrite")
    assert res.exit_code == 0, res.output
    one_error_line(run("query", tmp_path / "idx", "--users", users, "--out", tmp_path / "no" / "recs.parquet"),
                   "does not exist; create it first")


# ---- 12, 17. options checked before any work -----------------------------------------------

@pytest.mark.parametrize("option", [("--min-weight", "nan"), ("--l2", "inf"), ("--beta", "nan"), ("--l2", "nan"),
                                    ("--beta", "-inf")])
def test_non_finite_options_are_refused_before_any_work(tmp_path, option):
    write_lines(tmp_path / "data.txt", random_interactions(30, 20))
    res = run("build", tmp_path / "data.txt", "--out", tmp_path / "idx", *option)
    assert res.exit_code == 2 and "finite" in res.output, res.output
    assert not (tmp_path / "idx").exists()


def test_output_and_backend_conflicts_are_found_before_training(tmp_path, monkeypatch):
    from sparseidx.models.base import Model

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the options")
    monkeypatch.setattr(Model, "fit", no_training)
    write_lines(tmp_path / "data.txt", random_interactions(30, 20))
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "x").write_text("x")
    one_error_line(run("build", tmp_path / "data.txt", "--out", tmp_path / "idx"), "already exists")
    res = run("build", tmp_path / "data.txt", "--out", tmp_path / "new", "--model", "chol", "--backend", "faiss")
    assert res.exit_code == 2 and "gives sparse embeddings" in res.output, res.output
    res = run("build", tmp_path / "data.txt", "--out", tmp_path / "new", "--model", "puresvd", "--dims", 8,
              "--faiss-index", "Nonsense99")
    one_error_line(res, "FAISS cannot build 'Nonsense99'")


# ---- 16. the operating system's refusals are one line ---------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system (tmpfs), mounted for the test; needs root, as CI runs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.fail("cannot mount a tmpfs (run the tests as root, as .ci/run does)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_disk):
    write_lines(tmp_path / "data.txt", random_interactions(400, 300, density=0.2))
    res = run("build", tmp_path / "data.txt", "--out", small_disk / "idx", "--l2", 5, "--k", 100)
    one_error_line(res, "No space left on device", "free some space")
    assert os.listdir(small_disk) == []
    assert run("build", tmp_path / "data.txt", "--out", tmp_path / "idx", "--l2", 5, "--k", 100).exit_code == 0
    (small_disk / "filler").write_bytes(b"\0" * (250 * 1024))
    res = run("query", tmp_path / "idx", "--users", tmp_path / "data.txt", "--out", small_disk / "r.parquet", "-k", 50)
    one_error_line(res, "No space left on device")
    for target in ("parquet", "feast", "milvus", "qdrant", "pgvector", "vespa", "elasticsearch"):
        res = run("export", tmp_path / "idx", "--to", target, "--out", small_disk / f"out-{target}", "--json")
        one_error_line(res, "No space left on device")
    res = run("export", tmp_path / "idx", "--to", "parquet", "--out", small_disk / "items.parquet",
              "--users", tmp_path / "data.txt")
    one_error_line(res, "No space left on device")
    assert os.listdir(small_disk) == ["filler"]


def test_a_read_only_place_is_one_line(tmp_path, small_disk):
    write_lines(tmp_path / "data.txt", random_interactions(30, 20))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    one_error_line(run("build", tmp_path / "data.txt", "--out", small_disk / "idx", "--l2", 5, "--k", 5),
                   "Read-only file system")


def test_a_file_target_that_is_a_directory_is_one_line(built, tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    one_error_line(run("export", built, "--to", "qdrant", "--out", tmp_path / "dir.jsonl", "--overwrite"),
                   "is not a regular file")


def test_a_full_disk_under_a_faiss_build_is_one_line(tmp_path, small_disk):
    write_lines(tmp_path / "data.txt", random_interactions(300, 400, density=0.1))
    (small_disk / "filler").write_bytes(b"\0" * (100 * 1024))  # room for the Arrow files, not the FAISS one
    res = run("build", tmp_path / "data.txt", "--model", "puresvd", "--dims", 64, "--out", small_disk / "svd")
    one_error_line(res, "could not write", "vectors.faiss")
    assert os.listdir(small_disk) == ["filler"]
