"""Entry point: the ``sparseidx`` command group and its error handling."""

from __future__ import annotations

import click

from sparseidx import __version__
from sparseidx.errors import SparseIdxError
from sparseidx.progress import enable

from .bench import bench
from .build import build
from .deny import deny
from .evaluate import evaluate
from .export import export
from .inspect import info, verify
from .query import query
from .segments import segments
from .serve import serve


class _Group(click.Group):
    """Turns expected failures, and the operating system's refusals, into one 'Error: ...' line and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SparseIdxError as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError:
            raise click.ClickException("out of memory; use a smaller input or a model whose memory grows with "
                                       "non-zeros (--model chol --route sparse, or --model sansa)") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sparseidx")
@click.option("-v", "--verbose", count=True, help="More progress and timing detail on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Train, index and serve sparse item embeddings for recommendation.

    \b
    A typical session:
      sparseidx build train.txt --model chol --out book.idx
      sparseidx query book.idx --history 17 42 99 -k 10
      sparseidx evaluate book.idx --train train.txt --test test.txt
      sparseidx info book.idx

    Every command writes machine output (--json) to stdout and progress to stderr.
    """
    enable(0 if quiet else 1 + verbose)


for command in (build, query, evaluate, info, verify, export, segments, bench, serve, deny):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sparseidx")


if __name__ == "__main__":
    main()
