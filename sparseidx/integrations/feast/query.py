"""What a ``retrieve_online_documents_v2`` call asks for: a user vector u, or a history to encode.

- ``query=[u_0, ..., u_{d-1}]``: the dense user vector u = xE (d = the index's dimensions);
- ``query_string='{"indices": [...], "values": [...]}'``: the same vector, sparse;
- ``query_string='{"history": [item ids]}'``: a history x; the index encodes it through its
  encoder (u = xE) and, like ``sparseidx query``, never returns the history's own items.
The text is untrusted: it is parsed as JSON only, bounded in size, and checked field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...errors import DataError

MAX_QUERY_CHARS = 1 << 22
_FORMS = 'query=[floats] or query_string=\'{"history": [ids]}\' or \'{"indices": [...], "values": [...]}\''


@dataclass(frozen=True)
class Query:
    """One query: ``history`` (a list of item ids) or ``vector`` (a 1 x n_dims CSR matrix)."""

    history: list | None = None
    vector: sp.csr_matrix | None = None


def parse_query(embedding, query_string, n_dims: int) -> Query:
    """The query of a retrieval call, or a one-line DataError naming the accepted forms."""
    if embedding is not None and query_string is not None:
        raise DataError(f"give either a query vector or a query_string, not both ({_FORMS})")
    if embedding is not None:
        return Query(vector=_dense(embedding, n_dims))
    if not isinstance(query_string, str) or len(query_string) > MAX_QUERY_CHARS:
        raise DataError(f"the query must be {_FORMS}")
    try:
        given = json.loads(query_string)
    except ValueError:
        raise DataError(f"query_string is not JSON; give {_FORMS}") from None
    if isinstance(given, dict) and set(given) == {"history"} and isinstance(given["history"], list):
        return Query(history=_ids(given["history"]))
    if isinstance(given, dict) and set(given) == {"indices", "values"}:
        return Query(vector=_sparse(given["indices"], given["values"], n_dims))
    raise DataError(f"query_string must be a JSON object, one of {_FORMS}")


def _dense(embedding, n_dims: int) -> sp.csr_matrix:
    try:
        u = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError("the query vector must be a list of numbers") from None
    if u.shape != (n_dims,):
        raise DataError(f"the query vector has {u.size} values but the index has {n_dims} dimensions")
    if not np.isfinite(u).all():
        raise DataError("the query vector holds NaN or infinite values")
    return sp.csr_matrix(u[None, :])


def _sparse(indices, values, n_dims: int) -> sp.csr_matrix:
    if not isinstance(indices, list) or not isinstance(values, list) or len(indices) != len(values):
        raise DataError("query_string: indices and values must be lists of the same length")
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_dims for i in indices):
        raise DataError(f"query_string: indices must be integers in [0, {n_dims})")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise DataError("query_string: values must be numbers")
    data = np.asarray(values, dtype=np.float32)
    if not np.isfinite(data).all():
        raise DataError("query_string: values hold NaN or infinite numbers")
    cols = np.asarray(indices, dtype=np.int64)
    return sp.csr_matrix((data, (np.zeros(len(cols), dtype=np.int64), cols)), shape=(1, n_dims))


def _ids(history: list) -> list:
    if not all(isinstance(i, (int, str)) and not isinstance(i, bool) for i in history):
        raise DataError("query_string: a history is a list of item ids (integers or strings)")
    return history
