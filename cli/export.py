"""``sparseidx export``: an index's embeddings in the formats feature and vector stores take."""

from __future__ import annotations

import click

from sparseidx.export import TARGETS, export as export_index
from sparseidx.index import Index

from .common import IndexPath, echo_json, info


@click.command()
@click.argument("index", type=IndexPath())
@click.option("--to", "target", type=click.Choice(TARGETS), required=True, help="Output format.")
@click.option("--out", required=True, type=click.Path(), help="Output file (a directory for --to feast).")
@click.option("--users", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Parquet only: also write user embeddings u = xE for these histories to OUT.users.parquet.")
@click.option("--split-signs", is_flag=True,
              help="Elasticsearch/OpenSearch only: write negative weights as a second field instead of refusing.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
def export(index, target, out, users, split_signs, overwrite, as_json):
    """Export the item embeddings of INDEX (and user embeddings on request).

    \b
    Formats:
      parquet        canonical: item_id, indices list<uint32>, values list<float32>, prior
                     (re-import with 'sparseidx build --embeddings FILE.parquet')
      feast          a feature repository: feature_store.yaml, features.py, data/items.parquet
      milvus         Parquet with a struct<indices, values> sparse vector column (bulk import)
      qdrant         JSONL points with a named sparse vector
      pgvector       TSV: item_id, sparsevec text '{i:v,...}/dims' (1-based), for COPY (psql)
      vespa          JSONL feed with a mapped tensor tensor<float>(d{})
      elasticsearch  NDJSON bulk body with a sparse_vector / rank_features object
    Examples:
      sparseidx export book.idx --to parquet --out items.parquet --users train.txt
      sparseidx export book.idx --to feast --out feature_repo/
    """
    summary = export_index(Index.open(index), target, out, overwrite=overwrite, users=users,
                           split_signs=split_signs)
    if as_json:
        echo_json(summary)
        return
    info(f"wrote {summary['out']} ({target}, {summary['items']:,} items)")
    if "next" in summary:
        info(f"next: {summary['next']}")
