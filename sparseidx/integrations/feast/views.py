"""Which feature views the plugin indexes, and what their tags say (untrusted text, checked here).

An item view is a FeatureView tagged ``sparseidx: items`` with one entity (the item) and the
fields ``indices`` (Array(Int32)), ``values`` (Array(Float32)), ``prior`` (Float32),
``encoder_indices`` and ``encoder_values`` (V_i, prior_i and the encoder row E_i, as
``sparseidx export --to feast`` writes them). Optional tags: ``sparseidx.n_dims`` (the
dimension count; default: the largest index seen + 1) and ``sparseidx.options`` (a JSON
object of search knobs, e.g. ``{"prune": 0.003}``, over the store config's ``search_options``).
"""

from __future__ import annotations

import json
import os
import re

from ...errors import DataError
from ...index import SparseSearchOptions

TAG = "sparseidx"
TAG_VALUE = "items"
TAG_DIMS = "sparseidx.n_dims"
TAG_OPTIONS = "sparseidx.options"
FIELDS = ("indices", "values", "prior", "encoder_indices", "encoder_values")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_MAX_TAG = 4096


def is_item_view(table) -> bool:
    """True when the feature view is tagged ``sparseidx: items`` (the plugin indexes it)."""
    return (getattr(table, "tags", None) or {}).get(TAG) == TAG_VALUE


def check_item_view(table, defaults) -> None:
    """Raise DataError (one line) unless the item view has one entity, the five fields and valid tags
    (``defaults``: the store's search options, checked with the view's own)."""
    name = view_name(table)
    missing = [f for f in FIELDS if f not in {feature.name for feature in table.features}]
    if missing:
        raise DataError(f"feature view {name!r} is tagged {TAG}: {TAG_VALUE} but lacks the field(s) "
                        f"{', '.join(missing)}")
    if len(table.entity_columns) != 1:
        raise DataError(f"feature view {name!r}: an item view has exactly one entity (the item), "
                        f"not {len(table.entity_columns)}")
    view_dims(table)
    SparseSearchOptions.parse(view_options(table, defaults))


def view_name(table) -> str:
    """The view's name, checked to be safe as a file name (it names the index directory)."""
    name = table.name
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise DataError(f"feature view name {str(name)[:60]!r} cannot name an index directory: "
                        "use letters, digits, '_', '.' and '-'")
    return name


def repo_path(config, path: str) -> str:
    """``path`` of the store config made absolute against the repository (Feast's rule for SQLite paths)."""
    if config.repo_path and not os.path.isabs(path):
        return os.path.join(str(config.repo_path), path)
    return path


def index_dir(config, table) -> str:
    """The directory of the view's index: INDEX_PATH/VIEW.idx."""
    return os.path.join(repo_path(config, config.online_store.index_path), view_name(table) + ".idx")


def view_dims(table) -> int | None:
    """The ``sparseidx.n_dims`` tag as a positive int, or None when the view has no such tag."""
    text = (table.tags or {}).get(TAG_DIMS)
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip().isdigit() or not 0 < int(text) < 2 ** 31:
        raise DataError(f"feature view {table.name!r}: tag {TAG_DIMS} must be a positive integer, "
                        f"got {str(text)[:40]!r}")
    return int(text)


def view_options(table, defaults) -> dict:
    """The search knobs of the view: the store's ``defaults`` overridden by the ``sparseidx.options`` tag."""
    text = (table.tags or {}).get(TAG_OPTIONS)
    options = dict(defaults or {})
    if text is None:
        return options
    try:
        given = json.loads(text) if isinstance(text, str) and len(text) <= _MAX_TAG else None
    except ValueError:
        given = None
    if not isinstance(given, dict):
        raise DataError(f"feature view {table.name!r}: tag {TAG_OPTIONS} must be a JSON object of search "
                        f"knobs such as {{\"prune\": 0.003}}, got {str(text)[:40]!r}")
    options.update(given)
    return options
