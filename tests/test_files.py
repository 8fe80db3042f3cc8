"""Atomic outputs appear whole, with the permissions a plain open() or mkdir() would give."""

import os

import pytest

from sparseidx.errors import DataError
from sparseidx.files import atomic_output, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_directories_get_the_umask_permissions_not_the_private_temp_ones(tmp_path, umask_022):
    with atomic_output(tmp_path / "report.json", overwrite=False) as tmp:
        with open(tmp, "w") as fh:
            fh.write("{}")
    with atomic_output(tmp_path / "index", overwrite=False, directory=True) as tmp:
        with open(os.path.join(tmp, "part"), "w") as fh:
            fh.write("x")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "index").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "report.json"]


def test_an_existing_output_needs_overwrite_and_a_failed_write_keeps_it(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        with atomic_output(out, overwrite=False):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output(out, overwrite=True) as tmp:
            with open(tmp, "w") as fh:
                fh.write("new, half")
            raise RuntimeError("failed midway")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_text_replaces_a_report_whole(tmp_path, umask_022):
    out = tmp_path / "report.md"
    out.write_text("an older, longer report\n" * 10)
    write_text(str(out), "| a | b |\n")
    assert out.read_text() == "| a | b |\n"
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
