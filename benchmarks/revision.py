"""An earlier revision's files, for the benchmarks that measure it beside the working tree."""

from __future__ import annotations

import os
import subprocess

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_revision(rev: str, into: str) -> str:
    """Write git revision ``rev`` of this repository into a new directory under ``into``; returns its path
    (put it first on PYTHONPATH to import that revision's sparseidx)."""
    tree = os.path.join(into, rev)
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", HERE, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    return tree
