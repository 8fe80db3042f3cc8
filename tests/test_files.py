"""Atomic outputs: whole or nothing, the permissions open() and mkdir() give, and --overwrite only of ours."""

import os
import subprocess
import sys
import time

import pytest

from sparseidx.errors import OutputError
from sparseidx.files import OutputKind, atomic_output, check_output, remove_stale, write_text


def _foreign_unless_marked(path):
    if os.path.isdir(path):
        return None if os.path.exists(os.path.join(path, "MARK")) else "it has no MARK"
    with open(path) as fh:
        return None if fh.read().startswith("MARK") else "it does not start with MARK"


FILE = OutputKind("a marked file", False, _foreign_unless_marked)
DIRECTORY = OutputKind("a marked directory", True, _foreign_unless_marked)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_directories_get_the_umask_permissions_not_the_private_temp_ones(tmp_path, umask_022):
    with atomic_output(tmp_path / "report.json", FILE) as tmp:
        with open(tmp, "w") as fh:
            fh.write("MARK{}")
    with atomic_output(tmp_path / "index", DIRECTORY) as tmp:
        with open(os.path.join(tmp, "MARK"), "w") as fh:
            fh.write("x")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "index").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "report.json"]


def test_an_existing_output_needs_overwrite_and_a_failed_write_keeps_it(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("MARK old")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        with atomic_output(out, FILE):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output(out, FILE, overwrite=True) as tmp:
            with open(tmp, "w") as fh:
                fh.write("new, half")
            raise RuntimeError("failed midway")
    assert out.read_text() == "MARK old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_overwrite_refuses_what_sparseidx_did_not_write_and_touches_nothing(tmp_path):
    mine = tmp_path / "thesis.txt"
    mine.write_text("three years of work")
    with pytest.raises(OutputError, match="refusing to overwrite: it does not start with MARK"):
        with atomic_output(mine, FILE, overwrite=True) as tmp:
            open(tmp, "w").write("MARK")
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="refusing to overwrite: it has no MARK"):
        check_output(d, DIRECTORY, overwrite=True)
    with pytest.raises(OutputError, match="is not a directory"):
        check_output(mine, DIRECTORY, overwrite=True)
    with pytest.raises(OutputError, match="is not a regular file"):
        check_output(d, FILE, overwrite=True)
    os.symlink(mine, tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(tmp_path / "link", FILE, overwrite=True)
    with pytest.raises(OutputError, match="does not exist; create it first"):
        check_output(tmp_path / "missing" / "out", FILE, overwrite=True)
    assert mine.read_text() == "three years of work" and (d / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "link", "thesis.txt"]


def test_a_directory_is_exchanged_whole(tmp_path):
    out = tmp_path / "out"
    with atomic_output(out, DIRECTORY) as tmp:
        open(os.path.join(tmp, "MARK"), "w").write("1")
        open(os.path.join(tmp, "old-only"), "w").write("1")
    with atomic_output(out, DIRECTORY, overwrite=True) as tmp:
        open(os.path.join(tmp, "MARK"), "w").write("2")
    assert sorted(os.listdir(out)) == ["MARK"] and (out / "MARK").read_text() == "2"
    assert os.listdir(tmp_path) == ["out"]


def test_leftovers_of_dead_writers_are_removed_by_the_next_write_and_live_ones_kept(tmp_path):
    out = tmp_path / "out.txt"
    # a writer killed in the middle (its temporary stays behind)
    code = (f"import os; from sparseidx.files import atomic_output; import tests_files_kind as k\n"
            f"with atomic_output({str(out)!r}, k.FILE) as tmp:\n    open(tmp, 'w').write('MARK half')\n    os._exit(9)")
    kind_module = tmp_path / "kinds"
    kind_module.mkdir()
    (kind_module / "tests_files_kind.py").write_text(
        "from sparseidx.files import OutputKind\nFILE = OutputKind('x', False, lambda p: None)\n")
    env = {**os.environ, "PYTHONPATH": str(kind_module)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    left = [p for p in os.listdir(tmp_path) if p.startswith(".out.txt.tmp-")]
    assert len(left) == 1
    live = tmp_path / f".out.txt.tmp-{left[0].split('-')[1]}-{os.getpid()}-0123abcd"  # this process: alive
    live.write_text("in progress")
    legacy_old = tmp_path / ".out.txt.old-abcd1234"  # sparseidx 0.1.0 named no process
    legacy_old.mkdir()
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    legacy_new = tmp_path / ".out.txt.tmp-wxyz9876"
    legacy_new.write_text("maybe still being written")
    write_text(out, "MARK", FILE)
    assert sorted(os.listdir(tmp_path)) == sorted(["kinds", "out.txt", live.name, legacy_new.name])
    assert remove_stale(str(tmp_path), "out.txt") == []


def test_write_text_replaces_a_report_whole(tmp_path, umask_022):
    out = tmp_path / "report.md"
    out.write_text("# an older, longer report\n" * 10)
    write_text(str(out), "# a | b |\n")
    assert out.read_text() == "# a | b |\n"
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    (tmp_path / "notes.md").write_text("my notes")
    with pytest.raises(OutputError, match="does not start like a .md report"):
        write_text(str(tmp_path / "notes.md"), "# report")
    assert (tmp_path / "notes.md").read_text() == "my notes"


def test_a_write_touches_nothing_else_in_its_directory(tmp_path):
    """Only the output is flushed: a FIFO, a dangling link or a big tree beside it are not opened."""
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    code = ("from sparseidx.files import write_text\n"
            f"write_text({str(tmp_path / 'report.md')!r}, '# r')\n")
    result = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.md").read_text() == "# r"
