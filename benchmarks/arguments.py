"""The command-line arguments every amazon-book benchmark takes."""

from __future__ import annotations

import argparse


def amazon_book_parser(doc: str, out: str, l2: float) -> argparse.ArgumentParser:
    """A parser with the script's docstring as help and ``--data``, ``--out`` and ``--l2`` with these defaults."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="examples/amazon-book", help="directory with train.txt and test.txt")
    ap.add_argument("--out", default=out, help="report directory")
    ap.add_argument("--l2", type=float, default=l2)
    return ap
