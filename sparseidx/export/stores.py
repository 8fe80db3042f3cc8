"""Line-oriented store exports (Qdrant, pgvector) and what recognises every store file sparseidx writes.

- Qdrant: JSONL points ``{"id", "vector": {NAME: {"indices", "values"}}, "payload"}`` with a
  ``.qdrant.json`` companion (collection config and query). Qdrant takes signed weights. Every
  vector also holds a *presence* dimension (index n_dims, value 1): a query that adds it with a
  tiny weight reaches every item, so items sharing no dimension with u (score 0) rank above
  negative scores, as in sparseidx; without it Qdrant returns only items sharing a dimension.
- pgvector: PostgreSQL's COPY text format (tab-separated, backslash escapes) with ``item_id``
  and ``sparsevec`` text ``{i:v,...}/dims`` (1-based), a ``.sql`` companion creating the table
  and a ``.query.sql`` companion ranking by ``<#>`` (exact scan). HNSW on sparsevec takes at
  most 1,000 non-zeros: warned.

Vector values are those of ``vectors.store_vectors`` (priors folded in by default).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Callable

import numpy as np

from ..files import OutputKind
from ..plain import json_default, plain
from ..progress import log
from .companions import companion_path, json_kind, text_kind, written_together, write_json, write_text
from .parquet import parquet_kind

PGVECTOR_HNSW_MAX_NNZ = 1000
MAX_FIRST_LINE = 1 << 26  # bytes read to recognise a previous export by its first line
PRESENCE_WEIGHT = 1e-30  # the presence dimension's query weight: far below any score's float32 resolution


def _json_line(line: bytes):
    """The JSON value of a line, or None if it is not JSON."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def _is_qdrant(line: bytes) -> bool:
    doc = _json_line(line)
    return isinstance(doc, dict) and set(doc) == {"id", "vector", "payload"}


def _is_vespa(line: bytes) -> bool:
    doc = _json_line(line)
    return (isinstance(doc, dict) and isinstance(doc.get("put"), str) and doc["put"].startswith("id:")
            and isinstance(doc.get("fields"), dict))


def _is_elasticsearch(line: bytes) -> bool:
    doc = _json_line(line)
    return (isinstance(doc, dict) and set(doc) == {"index"} and isinstance(doc["index"], dict)
            and "_index" in doc["index"])


def _is_pgvector(line: bytes) -> bool:
    return re.fullmatch(rb"[^\t\n]*\t\{[^{}\t\n]*\}/[0-9]+\n?", line) is not None


def lines_kind(what: str, shape: str, looks_like: Callable[[bytes], bool]) -> OutputKind:
    """The OutputKind of a text export recognised by its first line (``shape`` says what that line is)."""
    def foreign(path: str) -> str | None:
        with open(path, "rb") as fh:
            line = fh.readline(MAX_FIRST_LINE + 1)
        if not line:
            return None  # an empty file holds nothing to lose
        if len(line) > MAX_FIRST_LINE or not looks_like(line):
            return f"its first line is not {shape}"
        return None
    return OutputKind(what, False, foreign)


MILVUS_FILE = parquet_kind("milvus", "a Milvus Parquet export")
QDRANT_FILE = lines_kind("a Qdrant JSONL export", 'a Qdrant point {"id", "vector", "payload"}', _is_qdrant)
PGVECTOR_FILE = lines_kind("a pgvector COPY file", "an item id, a tab and sparsevec text {i:v,...}/dims",
                           _is_pgvector)
VESPA_FILE = lines_kind("a Vespa JSONL feed", 'a Vespa put {"put": "id:...", "fields": {...}}', _is_vespa)
ELASTICSEARCH_FILE = lines_kind("an Elasticsearch NDJSON bulk body", 'a bulk action {"index": {"_index": ...}}',
                                _is_elasticsearch)
GUIDE = json_kind("a sparseidx store guide (JSON)")
SQL_MARKER = "-- sparseidx pgvector"
SQL_FILE = text_kind("a sparseidx pgvector SQL file", SQL_MARKER)


def companions(target: str, out: str) -> list[tuple[str, OutputKind]]:
    """The companion files of a store export ``out`` of ``target``, with their kinds."""
    from .vespa import SCHEMA_FILE

    extra = {"pgvector": [(".sql", SQL_FILE), (".query.sql", SQL_FILE)], "vespa": [(".sd", SCHEMA_FILE)]}
    return [(companion_path(out, f".{target}.json"), GUIDE)] + \
        [(companion_path(out, suffix), kind) for suffix, kind in extra.get(target, [])]


def write_lines(vectors, path: str, line_of_row) -> None:
    """Write one text line (or more) per item: ``line_of_row(row, item_id, dims, weights)``."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for b in vectors.batches():
            for r in range(len(b)):
                dims, weights = b.row(r)
                fh.write(line_of_row(b.start + r, plain(b.ids[r]), dims, weights))


def summary(target: str, out: str, vectors, files: list[str], **more) -> dict:
    """What an export wrote: its files, item count and size."""
    return {"target": target, "out": out, "items": len(vectors.item_ids), "bytes": os.path.getsize(out),
            "companions": files, "priors_folded": vectors.folded, **more}


def write_qdrant(index, vectors, out: str, overwrite: bool = False, field: str = "embedding") -> dict:
    """JSONL points for Qdrant (ids are the item's row number; the item id is in the payload) and the guide."""
    presence = vectors.n_dims

    def line(row, item_id, dims, weights):
        vector = {"indices": dims.tolist() + [presence], "values": weights.tolist() + [1.0]}
        return json.dumps({"id": row, "vector": {field: vector}, "payload": {"item_id": item_id}}) + "\n"
    guide = {"sparseidx": vectors.describe(index, "qdrant", presence_dimension=presence,
                                           presence_query_weight=PRESENCE_WEIGHT),
             "collection": {"sparse_vectors_config": {field: {}}},
             "load": "upsert each line as a point: PointStruct(id, vector={NAME: SparseVector(indices, values)}, "
                     "payload)",
             "query": {"using": field, "query": {"indices": "the dims of u, then presence_dimension",
                                                 "values": "the values of u, then presence_query_weight"},
                       "limit": 20}}
    outputs = [(out, QDRANT_FILE)] + companions("qdrant", out)
    with written_together(outputs, overwrite) as (tmp, guide_tmp):
        write_lines(vectors, tmp, line)
        write_json(guide_tmp, guide)
    return summary("qdrant", out, vectors, [p for p, _ in outputs[1:]])


def sparsevec_text(dims: np.ndarray, weights: np.ndarray, n_dims: int) -> str:
    """pgvector's sparsevec literal: ``{i:v,...}/n`` with 1-based indices."""
    body = ",".join(f"{d + 1}:{float(w)!r}" for d, w in zip(dims.tolist(), weights.tolist()))
    return f"{{{body}}}/{n_dims}"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value) -> str:
    """``value`` as a field of PostgreSQL's COPY text format: backslash, tab, newline and CR escaped."""
    return str(value).translate(_COPY_ESCAPES)


PGVECTOR_QUERY = """\
-- run: psql -v u='{{1:0.5,7:-1.25}}/{n_dims}' -v k=20 -f THIS_FILE
-- u is the user vector u = x E as sparsevec text (1-based dims); <#> is the negative inner product,
-- so the exact scan below returns the k items of largest <u, v_i>.
SELECT item_id, -(embedding <#> :'u'::sparsevec) AS score
FROM items
ORDER BY embedding <#> :'u'::sparsevec, item_id
LIMIT :k;
"""


def write_pgvector(index, vectors, out: str, overwrite: bool = False) -> dict:
    """item_id and sparsevec text in COPY text format, the table DDL (.sql) and the query (.query.sql)."""
    lengths = np.diff(vectors.matrix.indptr)
    over = int((lengths > PGVECTOR_HNSW_MAX_NNZ).sum())
    if over:
        log.warning("Warning: %d items have more than %d non-zeros; pgvector's HNSW index on sparsevec takes at "
                    "most %d (exact search still works)", over, PGVECTOR_HNSW_MAX_NNZ, PGVECTOR_HNSW_MAX_NNZ)
    n_dims = vectors.n_dims
    meta = json.dumps(vectors.describe(index, "pgvector"), default=json_default)
    ddl = (f"{SQL_MARKER} table: {meta}\nCREATE EXTENSION IF NOT EXISTS vector;\n"
           + create_table(vectors.item_ids.dtype.kind in "iu", n_dims) + ";\n")
    query = f"{SQL_MARKER} query: {meta}\n" + PGVECTOR_QUERY.format(n_dims=n_dims)

    def line(row, item_id, dims, weights):
        return f"{copy_field(item_id)}\t{sparsevec_text(dims, weights, n_dims)}\n"
    outputs = [(out, PGVECTOR_FILE)] + companions("pgvector", out)
    with written_together(outputs, overwrite) as (tmp, guide_tmp, ddl_tmp, query_tmp):
        write_lines(vectors, tmp, line)
        write_json(guide_tmp, {"sparseidx": vectors.describe(index, "pgvector"), "table": ddl,
                               "query": PGVECTOR_QUERY.format(n_dims=n_dims)})
        write_text(ddl_tmp, ddl)
        write_text(query_tmp, query)
    return summary("pgvector", out, vectors, [p for p, _ in outputs[1:]], items_over_hnsw_limit=over,
                   next=pgvector_load_command(out, outputs[2][0]))


def create_table(integer_ids: bool, n_dims: int) -> str:
    """The DDL of the table ``items`` the COPY file loads into."""
    return (f"CREATE TABLE items (item_id {'bigint' if integer_ids else 'text'} PRIMARY KEY, "
            f"embedding sparsevec({int(n_dims)}))")


def pgvector_load_command(out: str, ddl: str) -> str:
    """A shell command creating the table ``items`` (from the .sql file) and loading the COPY file into it."""
    return shlex.join(["psql", "-v", "ON_ERROR_STOP=1", "-f", ddl, "-c", "COPY items FROM STDIN"]) \
        + " < " + shlex.quote(out)
