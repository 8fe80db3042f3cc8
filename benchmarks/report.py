"""The benchmarks' report files: Markdown tables, and report.json with report.md in a report directory."""

from __future__ import annotations

import json
import os


def table(head: list[str], rows: list[list]) -> list[str]:
    """The lines of a Markdown table with columns ``head``, one line per row of already formatted cells."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def write(out: str, figures: dict, markdown: str) -> None:
    """Write ``figures`` to ``out``/report.json and ``markdown`` to ``out``/report.md, then print the Markdown."""
    from sparseidx.files import write_text  # here: the scripts that only build tables need not load sparseidx

    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "report.json"), json.dumps(figures, indent=2) + "\n")
    write_text(os.path.join(out, "report.md"), markdown)
    print(markdown)
