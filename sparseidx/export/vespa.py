"""Vespa: a JSONL feed of puts, a schema whose rank profile computes sparseidx's score, and the query.

The item vectors are mapped tensors ``tensor<float>(d{})``; the rank profile ``sparseidx``
computes ``sum(query(u) * attribute(embedding))``, the inner product over shared labels,
signs included. With ``where true`` every document is ranked, so the hits are sparseidx's
top-k (priors folded into the vectors by default). Document ids and field values are JSON-
escaped; nothing from the index enters the schema but the id field's type.
"""

from __future__ import annotations

import json

from .companions import text_kind, written_together, write_json, write_text
from .stores import VESPA_FILE, companions, summary, write_lines

SCHEMA_MARKER = "# sparseidx Vespa schema"
SCHEMA_FILE = text_kind("a sparseidx Vespa schema", SCHEMA_MARKER)
RANK_EXPRESSION = "sum(query(u) * attribute(embedding))"

SCHEMA = SCHEMA_MARKER + """: copy to schemas/item.sd of the application package.
schema item {{
    document item {{
        field item_id type {id_type} {{
            indexing: summary | attribute
        }}
        field embedding type tensor<float>(d{{}}) {{
            indexing: attribute | summary
        }}
    }}
    rank-profile sparseidx {{
        inputs {{
            query(u) tensor<float>(d{{}})
        }}
        first-phase {{
            expression: {expression}
        }}
    }}
}}
"""


def tensor_literal(dims, values) -> str:
    """A mapped tensor ``tensor<float>(d{})`` in Vespa's literal form: ``{{d:3}:0.5,{d:17}:-1.25}``."""
    return "{" + ",".join(f"{{d:{int(d)}}}:{float(v)!r}" for d, v in zip(dims, values)) + "}"


def write_vespa(index, vectors, out: str, overwrite: bool = False, namespace: str = "sparseidx") -> dict:
    """The feed (one put per item), the schema ``.sd`` and the ``.vespa.json`` guide with the query."""
    def line(row, item_id, dims, weights):
        cells = {str(d): float(w) for d, w in zip(dims.tolist(), weights.tolist())}
        return json.dumps({"put": f"id:{namespace}:item::{item_id}",
                           "fields": {"item_id": item_id, "embedding": cells}}) + "\n"
    id_type = "long" if vectors.item_ids.dtype.kind in "iu" else "string"
    guide = {"sparseidx": vectors.describe(index, "vespa", rank_profile="sparseidx", expression=RANK_EXPRESSION),
             "query": {"yql": "select item_id from item where true", "ranking": "sparseidx",
                       "input.query(u)": "u = x E as a tensor literal {{d:3}:0.5,{d:17}:-1.25}", "hits": 20}}
    outputs = [(out, VESPA_FILE)] + companions("vespa", out)
    with written_together(outputs, overwrite) as (tmp, guide_tmp, schema_tmp):
        write_lines(vectors, tmp, line)
        write_json(guide_tmp, guide)
        write_text(schema_tmp, SCHEMA.format(id_type=id_type, expression=RANK_EXPRESSION))
    return summary("vespa", out, vectors, [p for p, _ in outputs[1:]])
