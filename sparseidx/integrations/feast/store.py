"""``SparseIdxOnlineStore``: Feast's SQLite online store for every feature, plus a sparseidx index per item view.

Reads and writes of features go to Feast's own ``SqliteOnlineStore`` (a delegate that sees the
config's ``path``). A write to an item view (tag ``sparseidx: items``) then rebuilds that view's
index from all its rows and swaps it in atomically. ``retrieve_online_documents_v2`` answers
top-k by the sparse engine (``score = prior_i * <u, V_i>``, highest first, in ``distance``).
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any, Literal

from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType
from pydantic import Field, StrictStr

from ...errors import DataError
from ...index import Index
from ...index.format import INDEX_DIR
from .query import parse_query
from .rebuild import rebuild_index
from .views import check_item_view, index_dir, is_item_view, view_name, view_options

STORE_TYPE = "sparseidx.integrations.feast.SparseIdxOnlineStore"
_KEY_FIELDS = {ValueType.INT64: "int64_val", ValueType.INT32: "int32_val", ValueType.STRING: "string_val"}


class SparseIdxOnlineStoreConfig(FeastConfigBaseModel):
    """The ``online_store`` section of feature_store.yaml (Feast finds the store class in this module).

    ``path``: Feast's SQLite database, holding every feature; ``index_path``: the directory of
    the indexes, one per item view (INDEX_PATH/VIEW.idx); ``search_options``: engine knobs for
    every view (``{"prune": 0.003}``), under each view's ``sparseidx.options`` tag. Relative
    paths are taken from the repository, as for Feast's SQLite store.
    """

    type: Literal["sparseidx.integrations.feast.SparseIdxOnlineStore"] = STORE_TYPE
    path: StrictStr = "data/online_store.db"
    index_path: StrictStr = "data/sparseidx"
    search_options: dict[str, Any] = Field(default_factory=dict)


class _SqliteView:
    """A RepoConfig as Feast's SQLite store must see it: ``online_store`` is a SqliteOnlineStoreConfig."""

    def __init__(self, config):
        self._config = config
        self.online_store = SqliteOnlineStoreConfig(path=config.online_store.path)

    def __getattr__(self, name):
        return getattr(self._config, name)


class SparseIdxOnlineStore(OnlineStore):
    """A Feast online store: features in SQLite, top-k retrieval of items by sparse MIPS."""

    def __init__(self):
        self._sqlite = SqliteOnlineStore()
        self._views: tuple | None = None
        self._indexes: dict = {}
        self._lock = threading.Lock()

    def _delegate(self, config) -> _SqliteView:
        """The SQLite view of ``config`` (made once per config object)."""
        views = self._views
        if views is None or views[0] is not config:
            views = self._views = (config, _SqliteView(config))
        return views[1]

    def online_write_batch(self, config, table, data, progress) -> None:
        """Write the rows to SQLite; for an item view, then rebuild its index and swap it in."""
        self._sqlite.online_write_batch(self._delegate(config), table, data, progress)
        if is_item_view(table):
            rebuild_index(config, table)

    def online_read(self, config, table, entity_keys, requested_features=None):
        """Feature values of the entities, read from SQLite."""
        return self._sqlite.online_read(self._delegate(config), table, entity_keys, requested_features)

    def update(self, config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial):
        """Check the item views, create the SQLite tables, and remove the indexes of deleted item views."""
        for table in tables_to_keep:
            if is_item_view(table):
                check_item_view(table, config.online_store.search_options)
        self._sqlite.update(self._delegate(config), tables_to_delete, tables_to_keep, entities_to_delete,
                            entities_to_keep, partial)
        self._remove_indexes(config, tables_to_delete)

    def plan(self, config, desired_registry_proto):
        """The SQLite tables the registry needs (the indexes are made by materialization)."""
        return self._sqlite.plan(self._delegate(config), desired_registry_proto)

    def teardown(self, config, tables, entities) -> None:
        """Remove the SQLite database and the item views' indexes."""
        self._sqlite.teardown(self._delegate(config), tables, entities)
        self._remove_indexes(config, tables)

    def retrieve_online_documents(self, config, table, requested_features, embedding, top_k, distance_metric=None):
        """Not offered: Feast routes vector search through ``retrieve_online_documents_v2``."""
        raise DataError("the sparseidx online store answers FeatureStore.retrieve_online_documents_v2 only")

    def retrieve_online_documents_v2(self, config, table, requested_features, embedding, top_k,
                                     distance_metric=None, query_string=None, filters=None,
                                     include_feature_view_version_metadata=False):
        """Top-k items of the item view for a user vector (``embedding`` or sparse JSON) or a history.

        Returns (event time, entity key, {feature: value, "distance": score}) in rank order;
        ``distance`` is the sparseidx score prior_i * <u, V_i> (higher is better) and
        ``distance_metric`` is ignored. Search knobs come from the store's ``search_options``
        and the view's ``sparseidx.options`` tag.
        """
        if not is_item_view(table):
            raise DataError(f"feature view {table.name!r} is not a sparseidx item view (tag sparseidx: items)")
        if filters is not None:
            raise DataError("the sparseidx online store does not take filters; use the view's items only")
        index = self._index(config, table)
        options = index.Options.parse(view_options(table, config.online_store.search_options))
        query = parse_query(embedding, query_string, index.n_dims)
        if query.history is not None:
            scores, ids = index.search([query.history], top_k, options)
        else:
            scores, ids = index.search_vectors(query.vector, top_k, options)
        found = ids[0] >= 0
        keys = [_entity_key(table, item) for item in index.item_ids[ids[0][found]]]
        names = [f for f in requested_features or [] if f != "distance"]
        rows = self.online_read(config, table, keys, names) if keys else []
        rows = [(ts, {**(values or {}), "distance": ValueProto(float_val=float(score))})
                for (ts, values), score in zip(rows, scores[0][found])]
        return _for_feast_v2(keys, rows, index.item_ids[ids[0][found]].tolist())

    def _index(self, config, table):
        """The view's open index, opened again when a rebuild has swapped the directory."""
        path = index_dir(config, table)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"feature view {view_name(table)!r} has no index yet ({path}): "
                            "run 'feast materialize' first") from None
        key = (stat.st_dev, stat.st_ino)
        cached = self._indexes.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:
            index = Index.open(path)
            self._indexes[path] = (key, index)
        return index

    def _remove_indexes(self, config, tables) -> None:
        """Remove the index directories of these item views (only directories sparseidx wrote)."""
        for table in tables:
            if not is_item_view(table):
                continue
            path = index_dir(config, table)
            self._indexes.pop(path, None)
            if os.path.isdir(path) and not os.path.islink(path) and INDEX_DIR.foreign(path) is None:
                shutil.rmtree(path)  # only an index directory sparseidx wrote, nothing else in it


def _entity_key(table, item) -> EntityKeyProto:
    """The entity key of an item of a one-entity view."""
    column = table.entity_columns[0]
    field = _KEY_FIELDS.get(column.dtype.to_value_type())
    if field is None:
        raise DataError(f"feature view {table.name!r}: the item entity must be an Int64, Int32 or String")
    value = str(item) if field == "string_val" else int(item)
    return EntityKeyProto(join_keys=[column.name], entity_values=[ValueProto(**{field: value})])


def _for_feast_v2(keys: list, rows: list, items: list) -> list:
    """(time, key, features) tuples that ``FeatureStore.retrieve_online_documents_v2`` turns into rank order.

    Feast (0.67) takes the entity keys in the order given but pairs them with the feature rows
    by the entities' sorted order (``_get_unique_entities_from_values`` sorts them; the rows are
    not): the j-th row given lands at the rank of the j-th smallest item. So the j-th tuple holds
    the rank-j key and the features (and time) of the j-th smallest item, and the response
    Feast builds lists each item with its own features and score, best first.
    """
    order = sorted(range(len(items)), key=items.__getitem__)
    return [(rows[r][0], key, rows[r][1]) for key, r in zip(keys, order)]
