"""Companion files written beside a store export: the schema, mapping or query the store needs.

A companion of ``DIR/NAME.EXT`` is ``DIR/NAME`` + a suffix (``.qdrant.json``, ``.sql``, ...).
The export and its companions are checked before any work and appear together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os

from ..files import OutputKind, atomic_output, check_output
from ..plain import json_default

MAX_COMPANION = 1 << 24  # bytes read to recognise a companion sparseidx wrote


def companion_path(out: str, suffix: str) -> str:
    """``out`` without its extension, plus ``suffix``."""
    head, name = os.path.split(out)
    stem, ext = os.path.splitext(name)
    return os.path.join(head, (stem if stem and ext else name) + suffix)


def json_kind(what: str) -> OutputKind:
    """A JSON companion: an object whose first key is ``sparseidx``."""
    def foreign(path: str) -> str | None:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_COMPANION + 1)
        if not raw:
            return None
        try:
            doc = json.loads(raw) if len(raw) <= MAX_COMPANION else None
        except ValueError:
            doc = None
        return None if isinstance(doc, dict) and "sparseidx" in doc else "it is not a JSON file sparseidx wrote"
    return OutputKind(what, False, foreign)


def text_kind(what: str, marker: str) -> OutputKind:
    """A text companion whose first line starts with ``marker``."""
    def foreign(path: str) -> str | None:
        with open(path, "rb") as fh:
            line = fh.readline(4096)
        return None if not line or line.startswith(marker.encode()) else f"its first line is not {marker!r}"
    return OutputKind(what, False, foreign)


def check_all(outputs: list[tuple[str, OutputKind]], overwrite: bool) -> None:
    """Check every output before any work (an OutputError names the first one that may not be written)."""
    for path, kind in outputs:
        check_output(path, kind, overwrite)


@contextlib.contextmanager
def written_together(outputs: list[tuple[str, OutputKind]], overwrite: bool):
    """Yield temporary paths for ``outputs``; they replace their targets together, or none does."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_output(path, kind, overwrite)) for path, kind in outputs]


def write_json(path: str, doc: dict) -> None:
    """Write ``doc`` (whose first key is ``sparseidx``) as indented JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=2, default=json_default) + "\n")


def write_text(path: str, text: str) -> None:
    """Write ``text`` as UTF-8."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
