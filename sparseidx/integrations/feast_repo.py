"""A Feast repository served by the sparseidx online store (``export --to feast --feast-store sparseidx``).

The repository of ``sparseidx.export.feast`` (data/items.parquet, features.py, .feastignore)
with two changes: features.py tags the item view ``sparseidx: items`` so that materialization
indexes it, and feature_store.yaml names ``sparseidx.integrations.feast.SparseIdxOnlineStore``
and a SQL (SQLite) registry with ``serve_features_while_materializing``: Feast refuses reads of
a view while it materializes it unless a SQL registry says otherwise, and the plugin swaps its
index atomically so that reads may go on. The registry path is relative to the working
directory (Feast's rule for SQL URLs): run Feast from the repository. Writing needs no Feast.
"""

from __future__ import annotations

import functools
import os
import shlex

from ..export.feast import REPOSITORY_ENTRIES, repository_foreign, write_feast
from ..files import OutputKind, atomic_output

STORE_TYPE = "sparseidx.integrations.feast.SparseIdxOnlineStore"
INDEX_PATH = "data/sparseidx"

FEATURE_STORE_YAML = """\
project: {project}
provider: local
registry:
  registry_type: sql
  path: sqlite:///data/registry.db
  serve_features_while_materializing: true
online_store:
  type: """ + STORE_TYPE + """
  path: data/online_store.db
  index_path: """ + INDEX_PATH + """
offline_store:
  type: file
entity_key_serialization_version: 3
"""

TAGS_PY = """
# The sparseidx online store indexes the views tagged sparseidx: items on every materialization;
# search knobs go in a tag too, e.g. "sparseidx.options": '{"prune": 0.003}' (docs/feast-plugin.md).
item_embeddings.tags.update({"sparseidx": "items", "sparseidx.n_dims": str(N_DIMS)})
"""

ENTRIES = REPOSITORY_ENTRIES + (INDEX_PATH, INDEX_PATH + "/*")


REPOSITORY = OutputKind("a Feast repository for the sparseidx online store", True,
                        functools.partial(repository_foreign, entries=ENTRIES))


def write_plugin_repository(index, out: str, overwrite: bool = False, project: str = "sparseidx") -> dict:
    """Write a Feast repository served by the sparseidx online store into directory ``out`` (atomically)."""
    with atomic_output(out, REPOSITORY, overwrite) as tmp:
        inner = os.path.join(tmp, "repository")
        summary = write_feast(index, inner, project=project)
        for name in os.listdir(inner):
            os.rename(os.path.join(inner, name), os.path.join(tmp, name))
        os.rmdir(inner)
        with open(os.path.join(tmp, "feature_store.yaml"), "w", encoding="utf-8") as fh:
            fh.write(FEATURE_STORE_YAML.format(project=project))
        with open(os.path.join(tmp, "features.py"), "a", encoding="utf-8") as fh:
            fh.write(TAGS_PY)
    return {**summary, "out": out, "online_store": STORE_TYPE,
            "next": f"cd {shlex.quote(out)} && feast apply && "
                    "feast materialize-incremental $(date -u +%Y-%m-%dT%H:%M:%S)"}
