"""Elasticsearch / OpenSearch: a bulk body, the index mapping and a ``script_score`` query ranking like sparseidx.

Their sparse fields (``sparse_vector``, ``rank_features``) take positive weights only and
their plain queries cannot subtract, so each item's vector is stored exactly as ``keyword``
entries ``"DIM:VALUE"`` (doc values, not indexed) and a Painless ``script_score`` computes
s = <u, v_i> over them, signs included, for every document (``match_all``). Lucene scores
must be non-negative: the script returns the increasing map s + 1e-20 (s >= 0) or
1e-20 / (1 - s) (s < 0), which keeps the order of s. The same files work with OpenSearch.
"""

from __future__ import annotations

import json

from .companions import written_together, write_json
from .stores import ELASTICSEARCH_FILE, companions, summary, write_lines

SCRIPT = ("double s = 0.0; "
          "for (def e : doc['embedding']) { int c = e.indexOf(':'); def w = params.u.get(e.substring(0, c)); "
          "if (w != null) { s += w * Double.parseDouble(e.substring(c + 1)); } } "
          "return s >= 0 ? s + 1.0E-20 : 1.0E-20 / (1.0 - s);")
MAPPING = {"mappings": {"properties": {"item_id": {"type": "keyword"},
                                       "embedding": {"type": "keyword", "index": False, "doc_values": True}}}}


def query(u: dict, k: int = 20) -> dict:
    """The search body for a user vector ``u`` ({"DIM": value}, signed): the k items of largest <u, v_i>."""
    return {"size": k, "_source": ["item_id"],
            "query": {"script_score": {"query": {"match_all": {}},
                                       "script": {"source": SCRIPT, "params": {"u": u}}}}}


def write_elasticsearch(index, vectors, out: str, overwrite: bool = False, index_name: str = "items") -> dict:
    """NDJSON bulk body (documents of "DIM:VALUE" keyword entries) and the ``.elasticsearch.json`` guide."""
    def line(row, item_id, dims, weights):
        doc = {"item_id": item_id, "embedding": [f"{d}:{float(w)!r}" for d, w in zip(dims.tolist(), weights.tolist())]}
        action = {"index": {"_index": index_name, "_id": str(item_id)}}
        return json.dumps(action) + "\n" + json.dumps(doc) + "\n"
    guide = {"sparseidx": vectors.describe(index, "elasticsearch", index_name=index_name),
             "mapping": MAPPING, "query": query({"3": 0.5, "17": -1.25})}
    outputs = [(out, ELASTICSEARCH_FILE)] + companions("elasticsearch", out)
    with written_together(outputs, overwrite) as (tmp, guide_tmp):
        write_lines(vectors, tmp, line)
        write_json(guide_tmp, guide)
    return summary("elasticsearch", out, vectors, [p for p, _ in outputs[1:]])
