"""``sparseidx info`` and ``sparseidx verify``: what an index holds, and whether it is intact."""

from __future__ import annotations

import click

from sparseidx.index import Index
from sparseidx.index import format as fmt

from .common import IndexPath, echo_json, echo_table


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(index, as_json):
    """Show an index's model, sizes, parameters and pruning settings.

    Reads only the manifest; use 'sparseidx verify' to check the files.

    \b
    Examples:
      sparseidx info book.idx
      sparseidx info book.idx --json
    """
    manifest = fmt.read_manifest(index)
    manifest = {**manifest, "index_bytes": fmt.index_bytes(manifest)}
    if as_json:
        echo_json(manifest)
        return
    rows = []
    for key, value in manifest.items():
        if key == "files":
            for name, f in value.items():
                rows.append({"field": f"file {name}", "value": f"{f['bytes']:,} bytes"})
        elif isinstance(value, dict):
            if not value:
                rows.append({"field": key, "value": "none"})
            for sub, v in value.items():
                rows.append({"field": f"{key}.{sub}", "value": v})
        else:
            rows.append({"field": key, "value": f"{value:,}" if isinstance(value, int) else value})
    echo_table(rows)


@click.command()
@click.argument("index", type=IndexPath())
def verify(index):
    """Check every file of an index against its manifest; exit 1 if any is damaged.

    \b
    Checks that the manifest is well-formed, that every file the format needs is listed
    and is a regular file inside INDEX, that its size and SHA-256 match the manifest,
    and that the files are well-formed and of one build, with ids in range.
    Example:
      sparseidx verify book.idx
    """
    problems = Index.verify(index)
    if problems:
        for p in problems:
            click.echo(f"{index}: {p}", err=True)
        raise click.ClickException(f"{index} is damaged ({len(problems)} problem(s)); "
                                   "rebuild it with 'sparseidx build'")
    manifest = fmt.read_manifest(index)
    click.echo(f"OK: {index} ({len(manifest['files'])} files, {fmt.index_bytes(manifest):,} bytes, "
               f"format version {manifest['format_version']})")
