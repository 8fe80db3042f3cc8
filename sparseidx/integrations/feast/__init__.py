"""A Feast online store that answers top-k item retrieval with the sparseidx engine (see docs/feast-plugin.md).

In feature_store.yaml::

    online_store:
      type: sparseidx.integrations.feast.SparseIdxOnlineStore
      path: data/online_store.db
      index_path: data/sparseidx

Feature views tagged ``sparseidx: items`` are indexed on every materialization; all
features (of every view) are kept in Feast's own SQLite store.
"""

from .store import SparseIdxOnlineStore, SparseIdxOnlineStoreConfig

__all__ = ["SparseIdxOnlineStore", "SparseIdxOnlineStoreConfig"]
