"""``sparseidx export``: an index's embeddings in the formats feature and vector stores take."""

from __future__ import annotations

import click

from sparseidx.export import TARGETS
from sparseidx.export import export as export_index
from sparseidx.index import Index

from .common import IndexPath, echo_json, info


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--to", "target", type=click.Choice(TARGETS), required=True, help="Output format.")
@click.option("--out", required=True, type=click.Path(), help="Output file (a directory for --to feast).")
@click.option("--users", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Parquet only: also write user embeddings u = xE for these histories to OUT.users.parquet.")
@click.option("--no-fold-priors", "no_fold", is_flag=True,
              help="Store targets: write V_i, not prior_i * V_i (the store then ranks by <u, V_i>, unlike sparseidx).")
@click.option("--feast-store", type=click.Choice(["sqlite", "sparseidx"]), default="sqlite", show_default=True,
              help="--to feast: the repository's online store; sparseidx answers top-k inside Feast "
                   "(docs/feast-plugin.md).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
def export(index, target, out, users, no_fold, feast_store, overwrite, as_json):
    """Export the item embeddings of INDEX (and user embeddings on request).

    \b
    Formats:
      parquet        canonical: item_id, indices list<uint32>, values list<float32>, prior
                     (re-import with 'sparseidx build --embeddings FILE.parquet')
      feast          a feature repository: feature_store.yaml, features.py, data/items.parquet
      milvus         Parquet (sparse, or dense FLOAT_VECTOR for signed weights) + .milvus.json
      qdrant         JSONL points with a named sparse vector + .qdrant.json
      pgvector       TSV for COPY: item_id, sparsevec '{i:v,...}/dims' + .sql (table), .query.sql
      vespa          JSONL feed (mapped tensor d{}) + .sd schema with a rank profile + .vespa.json
      elasticsearch  NDJSON bulk (also OpenSearch) + .elasticsearch.json (mapping, script_score query)
    Store targets hold prior_i * V_i, so the store ranks like sparseidx; see docs/exports.md.
    Examples:
      sparseidx export book.idx --to parquet --out items.parquet --users train.txt
      sparseidx export book.idx --to feast --out feature_repo/
    """
    if feast_store == "sparseidx":
        if target != "feast" or users or no_fold:
            raise click.UsageError("--feast-store sparseidx goes with --to feast "
                                   "(and without --users or --no-fold-priors)")
        from sparseidx.integrations.feast_repo import write_plugin_repository

        summary = write_plugin_repository(Index.open(index), out, overwrite=overwrite)
    else:
        summary = export_index(Index.open(index), target, out, overwrite=overwrite, users=users,
                               fold_priors=not no_fold)
    if as_json:
        echo_json(summary)
        return
    info(f"wrote {summary['out']} ({target}, {summary['items']:,} items)")
    for path in summary.get("companions", []):
        info(f"wrote {path}")
    if "next" in summary:
        info(f"next: {summary['next']}")
